"""Per-sample vs whole-batch cache decisions on a mixed batch of the trained reference model.

One batch of 8 classes (28 steps, CFG 2.5). For each sample: blocks kept and PSNR against the
uncached output of the same seed, under (a) one decision per batch and (b) per-sample decisions
at the same threshold, and (c) one decision per batch at the threshold whose mean compute is
closest to (b)'s. CPU time: uncached, whole-batch and per-sample runs interleaved, medians.

    .venv/bin/python benchmarks/bench_per_sample.py [--threshold 0.15 --repeats 3]
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

import torch

import cache_dit
from cache_dit.reference import FashionFluxPipeline

LABELS = [0, 1, 2, 3, 5, 7, 8, 9]
STEPS = 28


def _run(pipe) -> torch.Tensor:
    gens = [torch.Generator().manual_seed(i) for i in range(len(LABELS))]
    with torch.no_grad():
        return pipe(LABELS, num_inference_steps=STEPS, guidance_scale=2.5, generator=gens,
                    output_type="pt").images


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = float(((a - b) ** 2).mean())
    return float("inf") if mse == 0 else 10 * math.log10(1.0 / mse)


def _measure(pipe, uncached, **options) -> dict:
    cache_dit.enable_cache(pipe, Fn_compute_blocks=1, warmup_steps=3, **options)
    out = _run(pipe)
    (item,) = cache_dit.summary(pipe)
    cache_dit.disable_cache(pipe)
    if options.get("per_sample_decisions"):
        kept = [1 - (item.streams[f"cond[{i}]"].blocks_saved_fraction
                     + item.streams[f"uncond[{i}]"].blocks_saved_fraction) / 2
                for i in range(len(LABELS))]
    else:
        kept = [item.kept_fraction] * len(LABELS)
    psnr = [_psnr(out[i], uncached[i]) for i in range(len(LABELS))]
    return {"kept": kept, "psnr": psnr}


def _cpu(pipe, options: dict | None) -> float:
    if options is not None:
        cache_dit.enable_cache(pipe, Fn_compute_blocks=1, warmup_steps=3, **options)
    start = time.process_time()
    _run(pipe)
    elapsed = time.process_time() - start
    if options is not None:
        cache_dit.disable_cache(pipe)
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threshold", type=float, default=0.15)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    pipe = FashionFluxPipeline.from_reference()
    pipe.set_progress_bar_config(disable=True)
    uncached = _run(pipe)
    threshold = args.threshold
    batch = _measure(pipe, uncached, residual_diff_threshold=threshold)
    sample = _measure(pipe, uncached, residual_diff_threshold=threshold, per_sample_decisions=True)
    target = statistics.mean(sample["kept"])
    sweep = {t: _measure(pipe, uncached, residual_diff_threshold=t)
             for t in (0.08, 0.1, 0.12, 0.15, 0.18, 0.2, 0.25, 0.3)}
    equal_t = min(sweep, key=lambda t: abs(statistics.mean(sweep[t]["kept"]) - target))
    equal = sweep[equal_t]
    print(f"reference model, one batch of {len(LABELS)} classes {LABELS}, {STEPS} steps, CFG 2.5, "
          f"F1B0 W3; PSNR vs uncached of the same seed")
    print(f"{'sample':>6} {'class':>5} | {'batch R' + str(threshold):>16} | "
          f"{'per-sample R' + str(threshold):>18} | {'batch R' + str(equal_t) + ' (eq. compute)':>26}")
    for i, label in enumerate(LABELS):
        cells = [f"{r['kept'][i]:.3f} {r['psnr'][i]:6.2f}dB" for r in (batch, sample, equal)]
        print(f"{i:>6} {label:>5} | {cells[0]:>16} | {cells[1]:>18} | {cells[2]:>26}")
    for name, r in (("batch", batch), ("per-sample", sample), (f"batch R{equal_t}", equal)):
        print(f"mean {name:>14}: kept {statistics.mean(r['kept']):.3f}, "
              f"PSNR {statistics.mean(r['psnr']):.2f} dB, worst {min(r['psnr']):.2f} dB")
    times = {"uncached": [], "batch": [], "per-sample": []}
    for _ in range(args.repeats):
        times["uncached"].append(_cpu(pipe, None))
        times["batch"].append(_cpu(pipe, dict(residual_diff_threshold=threshold)))
        times["per-sample"].append(_cpu(pipe, dict(residual_diff_threshold=threshold,
                                                   per_sample_decisions=True)))
    base = statistics.median(times["uncached"])
    for name, values in times.items():
        median = statistics.median(values)
        print(f"CPU {name:>10}: median {median:.2f} s ({base / median:.2f}x vs uncached)")


if __name__ == "__main__":
    main()
