"""Run a model uncached and under each cache configuration, side by side in one process."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

import numpy as np

from .. import api
from .configs import BenchConfig
from .models import BenchModel
from .timing import (block_timer, count_block_executions, cpu_time, disagrees, expected_speedup,
                     paired_ratios, ratio_stats)

__all__ = ["BenchRow", "BenchResult", "run_benchmark", "planned_calls", "quality"]


@dataclass
class BenchRow:
    config: str
    tag: str
    cached_steps: int  # cached transformer calls, all CFG branches together
    transformer_calls: int
    blocks_fraction: float  # block executions kept / executions uncached (the cache's own count)
    cpu_s: float  # median CPU seconds of this row's timed calls
    speedup: float  # median of the paired ratios uncached / cached
    psnr: float
    ssim: float
    lpips: float
    fid: float | None = None
    cpu_samples: list[float] = field(default_factory=list)
    speedup_lo: float = 1.0  # min of the paired ratios
    speedup_hi: float = 1.0  # max of the paired ratios
    expected: float = 1.0  # Amdahl speedup from the uncached block share and blocks_fraction
    flag: str = ""  # "!" where measured and expected differ by more than the spread
    blocks_counted: float = 1.0  # blocks whose linears really ran / block calls (hook count)
    overhead: float = 0.0  # median (cached - Amdahl-predicted) CPU time, share of the uncached

    @property
    def spread(self) -> str:
        """Min-max of the paired ratios, as printed."""
        return f"{self.speedup_lo:.2f}-{self.speedup_hi:.2f}"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class BenchResult:
    model: str
    steps: int
    samples: int
    repeats: int
    rows: list[BenchRow]
    images: dict[str, np.ndarray]  # config -> NHWC images (seed 0)
    notes: list[str]
    block_share: float = float("nan")  # share of uncached CPU time inside the blocks
    warmup: int = 1


def quality(reference: np.ndarray, images: np.ndarray, kind: str = "images",
            with_lpips: bool = True) -> dict[str, float]:
    """Mean PSNR / SSIM / LPIPS(alex) against the uncached reference, pair by pair.

    Images go through :mod:`cache_dit.metrics` (8-bit, as saved files would be). LPIPS needs
    32x32 input or more for AlexNet's pooling, so small images are upscaled (nearest) for LPIPS
    only. Latents get PSNR/SSIM on their raw values, with the reference's peak-to-peak as range.
    """
    if kind == "latents":
        from skimage.metrics import structural_similarity

        psnr, ssim = [], []
        for ref, out in zip(reference, images):
            span = float(ref.max() - ref.min())
            mse = float(np.mean((ref - out) ** 2))
            psnr.append(10 * math.log10(span**2 / mse) if mse > 0 else float("inf"))
            ssim.append(structural_similarity(ref, out, data_range=span, channel_axis=-1))
        lpips: list[float] = []
    else:
        from ..metrics import compute_lpips, compute_psnr, compute_ssim

        psnr, ssim, lpips = [], [], []
        for ref, out in zip(reference, images):
            psnr.append(compute_psnr(ref, out)[0])
            ssim.append(compute_ssim(ref, out)[0])
            if with_lpips:
                while ref.shape[0] < 64:
                    ref = ref.repeat(2, axis=0).repeat(2, axis=1)
                    out = out.repeat(2, axis=0).repeat(2, axis=1)
                lpips.append(compute_lpips(ref, out, progress=False)[0])
    finite = [p for p in psnr if math.isfinite(p)]
    return {
        # identical outputs have infinite PSNR; report the mean over the others, inf if all equal
        "psnr": float(np.mean(finite)) if finite else float("inf"),
        "ssim": float(np.mean(ssim)),
        "lpips": float(np.mean(lpips)) if lpips else float("nan"),
    }


def planned_calls(num_configs: int, repeats: int, warmup: int = 1, fid: bool = False) -> int:
    """Pipeline calls :func:`run_benchmark` makes (the progress bar's total)."""
    per_config = max(1, warmup) + 2 * repeats + int(fid)
    return warmup + 1 + int(fid) + num_configs * per_config


def _kept(summary) -> tuple[int, int, float]:
    streams = summary.streams.values()
    cached = sum(len(s.cached_steps) for s in streams)
    calls = sum(s.steps for s in streams)
    kept = sum(s.blocks_run for s in streams) / max(1, sum(s.blocks_total for s in streams))
    return cached, calls, kept


def run_benchmark(
    model: BenchModel,
    configs: list[BenchConfig],
    repeats: int = 3,
    with_lpips: bool = True,
    fid: Callable[[np.ndarray], float] | None = None,
    fid_generate: Callable[[], np.ndarray] | None = None,
    on_progress: Callable[[str], None] | None = None,
    warmup: int = 1,
) -> BenchResult:
    """Warm-up, then per config ``repeats`` pairs of (uncached, cached) calls of seed 0, back to back.

    ``on_progress(label)`` is called after every pipeline call (see :func:`planned_calls`). The
    speedup of a row is the median of its paired ratios; the uncached row's CPU time is the median
    of all uncached samples. One uncached call runs with hooks around each block to measure the
    share of time inside them, which with the blocks kept gives the expected speedup.
    """
    if repeats < 1 or warmup < 0:
        raise ValueError(f"need repeats >= 1 and warmup >= 0, got repeats={repeats}, warmup={warmup}")
    say = on_progress or (lambda _msg: None)
    pipe = model.pipe
    generate = lambda: model.generate(0)  # noqa: E731
    api.disable_cache(pipe)
    for _ in range(warmup):
        generate()
        say("warm-up")
    with count_block_executions(model.transformer, model.block_lists) as counted, \
            block_timer(model.transformer, model.block_lists) as timed:
        total, reference = cpu_time(generate)
    say("block share")
    block_share = min(1.0, timed["inside"] / total)
    uncached_calls = counted["calls"] // model.num_blocks
    base_fid = fid(fid_generate()) if fid else None
    if fid:
        say("uncached FID")
    images = {"uncached": reference}
    rows, base_samples = [], []
    try:
        for config in configs:
            api.enable_cache(pipe, **config.options)
            with count_block_executions(model.transformer, model.block_lists) as counted:
                for _ in range(max(1, warmup)):  # at least one call, for the count
                    generate()
                    say(f"{config.name} warm-up")
            blocks_counted = counted["executed"] / max(1, counted["calls"])
            pairs_a, pairs_b, out = [], [], None
            for _ in range(repeats):
                api.disable_cache(pipe)
                seconds, _ = cpu_time(generate)
                pairs_a.append(seconds)
                say(f"{config.name} uncached")
                api.enable_cache(pipe, **config.options)
                seconds, out = cpu_time(generate)
                pairs_b.append(seconds)
                say(config.name)
            (summary,) = api.summary(pipe)
            cached, calls, kept = _kept(summary)
            ratios = ratio_stats(paired_ratios(pairs_a, pairs_b))
            expected = expected_speedup(block_share, kept)
            # what the cache itself costs (diffs, forecasts), pair by pair
            overhead = float(np.median([b / a - 1 / expected for a, b in zip(pairs_a, pairs_b)]))
            q = quality(reference, out, model.output_kind, with_lpips)
            config_fid = fid(fid_generate()) if fid else None
            if fid:
                say(f"{config.name} FID")
            rows.append(BenchRow(
                config.name, summary.tag, cached, calls, kept, float(np.median(pairs_b)),
                ratios["median"], q["psnr"], q["ssim"], q["lpips"], config_fid, pairs_b,
                ratios["lo"], ratios["hi"], expected, "!" if disagrees(ratios, expected) else "",
                blocks_counted, overhead,
            ))
            base_samples += pairs_a
            images[config.name] = out
    finally:
        api.disable_cache(pipe)
    base_cpu = float(np.median(base_samples)) if base_samples else total
    rows.insert(0, BenchRow(
        "uncached", "none", 0, uncached_calls, 1.0, base_cpu, 1.0, float("inf"), 1.0,
        0.0 if model.output_kind == "images" and with_lpips else float("nan"), base_fid,
        base_samples or [total]))
    return BenchResult(model.name, model.steps, len(reference), repeats, rows, images, model.notes,
                       block_share, warmup)
