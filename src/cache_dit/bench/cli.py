"""``cache-dit-bench``: speed and quality of cache configurations, side by side in one run."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Sequence

import torch

from .configs import BenchConfig, load_configs, parse_config
from .models import MODELS, build_model

__all__ = ["main", "build_parser"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cache-dit-bench",
        description="Run a pipeline uncached and under cache configurations; print speedup "
                    "(process CPU time of uncached/cached call pairs timed back to back), the "
                    "speedup the blocks kept predict, and quality (PSNR/SSIM/LPIPS vs uncached).",
    )
    parser.add_argument("--model", default="reference", choices=sorted(MODELS),
                        help="reference: the trained Fashion-MNIST FLUX (default); deep-reference: "
                             "its 16-block sibling; medium-flux: random-weight speed model")
    parser.add_argument("--config", action="append", default=None, metavar="STR",
                        help="a config string such as F1B0_R0.08_T1O2 (repeatable); default: the "
                             "model's four default configs")
    parser.add_argument("--configs-file", metavar="YAML", help="configs from a YAML file")
    parser.add_argument("--budget", action="append", type=float, default=None, metavar="X",
                        help="also a compute budget: keep fraction X of the block executions "
                             "(config F1B0_BUD<X>; repeatable); its blocks column is what it kept")
    parser.add_argument("--steps", type=int, default=None, help="denoising steps (default 28)")
    parser.add_argument("--samples", type=int, default=10, help="images per run (default 10)")
    parser.add_argument("--repeats", type=int, default=3,
                        help="timed (uncached, cached) pairs per config (median of the ratios)")
    parser.add_argument("--warmup", type=int, default=1,
                        help="untimed calls first, uncached and per config (default 1)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--fid", type=int, default=0, metavar="N",
                        help="also FID of N samples vs the Fashion-MNIST test set (reference "
                             "models only)")
    parser.add_argument("--no-lpips", action="store_true", help="skip LPIPS")
    parser.add_argument("--out", default="bench_out", help="output folder (default bench_out)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def _configs(args, model) -> list[BenchConfig]:
    configs = []
    if args.configs_file:
        configs += load_configs(args.configs_file)
    configs += [parse_config(text) for text in (args.config or [])]
    if not configs:
        configs = [parse_config(text) for text in model.default_configs]
    return configs + [parse_config(f"F1B0_BUD{budget:g}") for budget in (args.budget or [])]


def _fid_scorer(model, samples: int):
    """FID of `samples` images (cycling the classes) against the shipped test-set statistics."""
    from ..metrics import FrechetInceptionDistance
    from ..reference.fid import fid_against_test_set

    fid = FrechetInceptionDistance(progress=False)

    def generate():
        return model.generate(1234, class_labels=[i % 10 for i in range(samples)])

    return (lambda images: fid_against_test_set(images, fid)), generate


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    for name in ("steps", "samples", "repeats", "threads"):
        value = getattr(args, name)
        if value is not None and value < 1:
            print(f"cache-dit-bench: --{name} must be >= 1, got {value}", file=sys.stderr)
            return 2
    if args.warmup < 0:
        print(f"cache-dit-bench: --warmup must be >= 0, got {args.warmup}", file=sys.stderr)
        return 2
    if args.fid and args.model not in ("reference", "deep-reference"):
        print("cache-dit-bench: --fid needs --model reference or deep-reference (FID statistics "
              "exist only for the Fashion-MNIST test set)", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    from .report import format_table, write_outputs
    from .runner import planned_calls, run_benchmark

    model = build_model(args.model, args.steps, args.samples)
    try:
        configs = _configs(args, model)
    except (ValueError, TypeError, OSError) as exc:
        print(f"cache-dit-bench: {exc}", file=sys.stderr)
        return 2
    fid, fid_generate = _fid_scorer(model, args.fid) if args.fid else (None, None)
    from tqdm import tqdm

    bar = tqdm(total=planned_calls(len(configs), args.repeats, args.warmup, bool(args.fid)),
               desc="cache-dit-bench", unit="call", disable=args.no_progress)
    started = time.process_time()

    def progress(name: str) -> None:
        bar.set_postfix_str(name, refresh=False)
        bar.update(1)

    try:
        result = run_benchmark(model, configs, repeats=args.repeats, with_lpips=not args.no_lpips,
                               fid=fid, fid_generate=fid_generate, on_progress=progress,
                               warmup=args.warmup)
    except (ValueError, TypeError) as exc:
        print(f"cache-dit-bench: {exc}", file=sys.stderr)
        return 2
    finally:
        bar.close()
    print(f"model {result.model}: {result.steps} steps, {result.samples} images per run, "
          f"{args.threads} thread(s), {result.warmup} warm-up call(s), then per config "
          f"{result.repeats} (uncached, cached) pairs back to back "
          f"(bench total {time.process_time() - started:.0f} CPU s)")
    print(f"blocks take {result.block_share:.1%} of the uncached CPU time; expected = "
          f"1 / (1 - {result.block_share:.3f} * (1 - blocks)); speedup = median of the paired "
          f"ratios, min-max their spread; ! = measured and expected differ by more than the spread; "
          f"overhead = cached CPU time beyond the expected, as a share of the uncached")
    for note in result.notes:
        print(f"note: {note}")
    print(format_table(result))
    paths = write_outputs(result, args.out)
    print("wrote " + ", ".join(str(p) for p in paths.values()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
