"""DBCache on a medium random-weight FLUX: overhead, efficiency, and the speed/quality frontier
against diffusers' own First Block Cache, all measured side by side in one process.

    .venv/bin/python benchmarks/bench_dbcache_frontier.py [--steps 28] [--repeats 3]

Printed, each a ratio of process CPU times (torch on one thread, medians of --repeats calls):
- never-cache overhead: threshold 0 (hooks installed, nothing skipped) / uncached. Target <= 1.005.
- always-cache efficiency, F1B0: ideal / cached, ideal = uncached time outside the blocks +
  uncached time inside the blocks x the fraction of block executions kept. Target >= 0.98.
- a threshold sweep of cache-dit F1B0 (warmup 0, to match FBCache), F8B0 (warmup 8), and
  diffusers' FirstBlockCacheConfig over the same thresholds: speedup, fraction of blocks run,
  PSNR of the latent displacement vs uncached (see cache_dit.bench.models).
"""

from __future__ import annotations

import argparse
import datetime
import platform

import torch
from diffusers.hooks import FirstBlockCacheConfig

import cache_dit
from cache_dit.bench.models import build_model
from cache_dit.bench.runner import quality
from cache_dit.bench.timing import block_time_fraction, count_block_executions, median_cpu_time

THRESHOLDS = (0.02, 0.04, 0.06, 0.08, 0.12, 0.16, 0.24)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=28)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--thresholds", type=float, nargs="*", default=THRESHOLDS)
    args = parser.parse_args()
    torch.set_num_threads(1)
    model = build_model("medium-flux", steps=args.steps, samples=1)
    pipe, transformer, lists = model.pipe, model.transformer, model.block_lists
    generate = lambda: model.generate(0)  # noqa: E731

    print(f"# DBCache frontier, medium FLUX ({model.num_blocks} blocks), {args.steps} steps, "
          f"1 thread, CPU-time medians of {args.repeats}; {platform.processor() or platform.machine()}"
          f", torch {torch.__version__}, {datetime.date.today()}")
    base, base_samples, reference = median_cpu_time(generate, args.repeats)
    inside = block_time_fraction(generate, transformer, lists)
    print(f"uncached: {base:.2f} CPU s (samples {', '.join(f'{s:.2f}' for s in base_samples)}); "
          f"{inside:.1%} of it inside the blocks")

    cache_dit.enable_cache(pipe, residual_diff_threshold=0.0)
    never, _, out = median_cpu_time(generate, args.repeats)
    assert (out == reference).all(), "threshold 0 must reproduce the uncached output exactly"
    print(f"never-cache overhead (threshold 0 / uncached): {never / base:.4f}  (target <= 1.005)")

    cache_dit.enable_cache(pipe, Fn_compute_blocks=1, warmup_steps=0, residual_diff_threshold=1e9)
    always, _, _ = median_cpu_time(generate, args.repeats)
    kept = 1.0 - cache_dit.summary(pipe)[0].blocks_saved_fraction
    ideal = base * (1 - inside) + base * inside * kept
    print(f"always-cache F1B0: blocks kept {kept:.1%}, cached {always:.2f} s, ideal {ideal:.2f} s, "
          f"efficiency ideal/cached {ideal / always:.4f}  (target >= 0.98)")
    cache_dit.disable_cache(pipe)

    rows = []

    def measure(label, threshold, enable, disable, stats):
        enable()
        cpu, _, out = median_cpu_time(generate, args.repeats)
        with count_block_executions(transformer, lists) as counted:
            generate()
        extra = stats()
        disable()
        q = quality(reference, out, model.output_kind)
        rows.append((label, threshold, base / cpu, counted["executed"] / counted["calls"], extra,
                     q["psnr"]))

    for threshold in args.thresholds:
        for label, options in (("cache-dit F1B0 W0", dict(Fn_compute_blocks=1, warmup_steps=0)),
                               ("cache-dit F8B0 W8", dict(Fn_compute_blocks=8, warmup_steps=8))):
            measure(label, threshold,
                    lambda: cache_dit.enable_cache(pipe, residual_diff_threshold=threshold, **options),
                    lambda: cache_dit.disable_cache(pipe),
                    lambda: len(cache_dit.summary(pipe)[0].cached_steps))
        measure("diffusers FBCache", threshold,
                lambda: transformer.enable_cache(FirstBlockCacheConfig(threshold=threshold)),
                transformer.disable_cache, lambda: "-")

    print()
    print("| method | threshold | speedup | blocks run | cached steps | PSNR (dB) |")
    print("|---|---|---|---|---|---|")
    for label, threshold, speedup, run_fraction, cached, psnr in rows:
        print(f"| {label} | {threshold:g} | {speedup:.2f}x | {run_fraction:.1%} | {cached} | "
              f"{psnr:.2f} |")


if __name__ == "__main__":
    main()
