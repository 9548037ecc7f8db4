"""Why our TaylorSeer lost to cache-dit 1.5.3's, measured: calibrators replayed at fixed decisions.

    PYTHONPATH=src .venv/bin/python benchmarks/forecast_replay.py [--images 4] [--csv out.csv]
        [--medium-flux]   # also medium FLUX (latents), threshold 0.16 warmup 4 and 0.24 / 2: slow

On the trained reference model (28 steps, CFG 2.5, F1B0, residual cache), for each cached-step
pattern (the ones plain DBCache takes at several thresholds and warmups, which are exactly
cache-dit 1.5.3's decisions, plus fixed-interval schedules), every calibrator variant is run
closed loop on the same images (see :mod:`cache_dit.bench.forecast`). Printed, per pattern and
variant: PSNR of the image against the uncached one (mean over images, 8-bit), the mean relative
L1 of the forecast residual at the cached steps, closed loop and open loop (fed the uncached
trajectory). Variants:

- ``reuse``: order 0 (plain DBCache);
- ``newton{m}``: today's forecaster (Newton polynomial from the first computed step);
- ``newton2@3``: the same polynomial, but no point before step 2 (cache-dit's start-up only);
- ``taylor2@0``: the spec's Taylor formula with cache-dit's derivative ladder, from step 0
  (cache-dit's formula only);
- ``taylor{m}``: cache-dit 1.5.3's TaylorSeer exactly (formula and start-up);
- ``foca``: cache-dit 1.5.3's FoCa exactly; ``foca-ps@3``: its slopes taken per step (divided
  by their gaps) and TaylorSeer's start-up (no slope before step 3);
- ``hermite1``: scaled-Hermite forecast (HiCache) over taylor1's derivatives, sigma 0.63.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import platform
import statistics
import sys
import time

import torch

from cache_dit.bench.forecast import (dbcache_patterns, interval_pattern, kept_fraction,
                                      open_loop_error, replay)
from cache_dit.calibrators.foca import FoCaCalibrator
from cache_dit.calibrators.hermite import HermiteCalibrator
from cache_dit.calibrators.newton import NewtonCalibrator
from cache_dit.calibrators.reuse import ReuseCalibrator
from cache_dit.calibrators.taylorseer import TaylorSeerCalibrator
from cache_dit.reference import FashionFluxPipeline

STEPS, GUIDANCE, FN, NUM_BLOCKS = 28, 2.5, 1, 6
DBCACHE = [(0.12, 2), (0.24, 2), (0.16, 3), (0.24, 3), (0.16, 4), (0.24, 4), (0.24, 8), (0.32, 8)]
INTERVALS = [(2, 2), (4, 2), (4, 3)]  # (warmup, compute every n-th step)


def variants() -> dict:
    v = {"reuse": ReuseCalibrator}
    for m in (1, 2):
        v[f"newton{m}"] = lambda m=m: NewtonCalibrator(m)
    v["newton2@3"] = lambda: NewtonCalibrator(2, derivative_start_step=3)
    v["taylor2@0"] = lambda: TaylorSeerCalibrator(2, derivative_start_step=0)
    for m in (1, 2):
        v[f"taylor{m}"] = lambda m=m: TaylorSeerCalibrator(m)
    v["foca"] = FoCaCalibrator
    v["foca-ps@3"] = lambda: FoCaCalibrator(per_step_slopes=True, derivative_start_step=3)
    v["hermite1"] = lambda: HermiteCalibrator(1, sigma=0.63)
    return v


def medium_flux(images: int, makers: dict) -> None:
    """The same replay on medium random-weight FLUX (one call per step, guidance-distilled), through
    forward hooks; PSNR of the latent displacement as in ``cache_dit.bench.models``."""
    from cache_dit.bench.forecast import replay_hooked
    from cache_dit.bench.models import build_model
    from cache_dit.bench.runner import quality

    model = build_model("medium-flux", samples=1)
    pipe, tr = model.pipe, model.transformer
    blocks = list(tr.transformer_blocks) + list(tr.single_transformer_blocks)
    kwargs = {k: v for k, v in model.call_kwargs.items() if k != "num_images_per_prompt"}

    def noise(seed: int) -> torch.Tensor:
        return torch.randn((1, *model.latent_shape[1:]), generator=torch.Generator("cpu").manual_seed(seed))

    def run(seed: int, rows: int) -> torch.Tensor:
        return pipe(latents=noise(seed).repeat(rows, 1, 1), num_images_per_prompt=rows,
                    num_inference_steps=STEPS, output_type="latent", **kwargs).images.float()

    def moved(latents: torch.Tensor, seed: int):
        side = int(round(latents.shape[1] ** 0.5))
        return (latents - noise(seed)).reshape(1, side, side, -1).numpy()

    import cache_dit

    print(f"\n## medium FLUX, latent-displacement PSNR (dB), {images} seeds, F{FN}B0\n")
    print("| pattern | kept | " + " | ".join(makers) + " |")
    print("|---" * (len(makers) + 2) + "|")
    for threshold, warmup in ((0.16, 4), (0.24, 2)):
        cache_dit.enable_cache(pipe, Fn_compute_blocks=FN, Bn_compute_blocks=0,
                               residual_diff_threshold=threshold, warmup_steps=warmup)
        patterns = []
        for seed in range(images):
            pipe(latents=noise(seed), num_inference_steps=STEPS, output_type="latent", **kwargs)
            patterns.append(frozenset(pipe._cache_dit_session.controllers[0].streams[0].stats.cached_steps))
        cache_dit.disable_cache(pipe)
        uncached, outputs = replay_hooked(blocks, run, patterns, makers, fn=FN)
        kept = statistics.mean(kept_fraction((p,), STEPS, len(blocks), FN) for p in patterns)
        cells = [statistics.mean(quality(moved(uncached[s], s), moved(outputs[(s, n)], s),
                                         kind="latents")["psnr"] for s in range(images)) for n in makers]
        print(f"| DBCache t={threshold} w={warmup} | {kept:.2f} | " + " | ".join(f"{c:.1f}" for c in cells) + " |",
              flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=4, help="images (seeds 0.., classes cycled)")
    parser.add_argument("--csv", default=None, help="also write every number to this CSV")
    parser.add_argument("--medium-flux", action="store_true", help="also replay on medium FLUX (slow)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    start = time.time()
    pipe = FashionFluxPipeline.from_reference()
    pipe.set_progress_bar_config(disable=True)
    seeds = list(range(args.images))
    labels = [s % 10 for s in seeds]
    patterns = {}
    for threshold, warmup in DBCACHE:
        patterns[f"DBCache t={threshold} w={warmup}"] = dbcache_patterns(
            pipe, labels, seeds, STEPS, GUIDANCE, Fn_compute_blocks=FN, Bn_compute_blocks=0,
            residual_diff_threshold=threshold, warmup_steps=warmup)
    for warmup, every in INTERVALS:
        one = interval_pattern(STEPS, warmup, every)
        patterns[f"every {every} after w={warmup}"] = [(one, one)] * len(seeds)
    makers = variants()
    rows = []
    for name, pats in patterns.items():
        print(f"{time.time() - start:6.0f} s  replaying {name}", file=sys.stderr, flush=True)
        result = replay(pipe, labels, seeds, pats, makers, fn=FN, steps=STEPS, guidance=GUIDANCE)
        kept = statistics.mean(kept_fraction(p, STEPS, NUM_BLOCKS, FN) for p in pats)
        first = statistics.mean(min(min(c, default=STEPS) for c in p) for p in pats)
        for variant, make in makers.items():
            closed = [e for i in seeds for e in result.errors[(i, variant)]]
            opened = [e for i in seeds for b in range(2) for e in open_loop_error(
                result.uncached_residuals[i][b], pats[i][b], make)]
            rows.append({"pattern": name, "kept": kept, "first_cached": first, "variant": variant,
                         "psnr": statistics.mean(result.psnr(i, variant) for i in seeds),
                         "rel_l1_closed": statistics.mean(closed) if closed else 0.0,
                         "rel_l1_open": statistics.mean(opened) if opened else 0.0})
    names = list(makers)
    print(f"# forecast replay, reference model, {len(seeds)} images, {STEPS} steps, CFG {GUIDANCE}, "
          f"F{FN}B0 residual; {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, "
          f"{platform.machine()}, {time.time() - start:.0f} s")
    for metric, fmt, title in (("psnr", "{:.1f}", "image PSNR (dB) vs uncached, closed loop"),
                               ("rel_l1_closed", "{:.3f}", "forecast rel. L1 at cached steps, closed loop"),
                               ("rel_l1_open", "{:.3f}", "forecast rel. L1 at cached steps, open loop")):
        print(f"\n## {title}\n")
        print("| pattern | kept | 1st cached | " + " | ".join(names) + " |")
        print("|---" * (len(names) + 3) + "|")
        for name in patterns:
            cells = {r["variant"]: r for r in rows if r["pattern"] == name}
            any_row = cells[names[0]]
            print(f"| {name} | {any_row['kept']:.2f} | {any_row['first_cached']:.1f} | "
                  + " | ".join(fmt.format(cells[n][metric]) for n in names) + " |")
        means = [statistics.mean(r[metric] for r in rows if r["variant"] == n) for n in names]
        print("| **mean** | | | " + " | ".join(fmt.format(m) for m in means) + " |")
    if args.csv:
        with open(args.csv, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    if args.medium_flux:
        medium_flux(min(args.images, 2), makers)


if __name__ == "__main__":
    main()
