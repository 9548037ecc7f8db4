"""Run a model uncached and under each cache configuration, side by side in one process."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

import numpy as np

from .. import api
from .configs import BenchConfig
from .models import BenchModel
from .timing import count_block_executions, median_cpu_time

__all__ = ["BenchRow", "BenchResult", "run_benchmark", "quality"]


@dataclass
class BenchRow:
    config: str
    tag: str
    cached_steps: int  # cached transformer calls, all CFG branches together
    transformer_calls: int
    blocks_fraction: float  # block executions kept / executions uncached
    cpu_s: float
    speedup: float
    psnr: float
    ssim: float
    lpips: float
    fid: float | None = None
    cpu_samples: list[float] = field(default_factory=list)

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


def run_benchmark(
    model: BenchModel,
    configs: list[BenchConfig],
    repeats: int = 3,
    with_lpips: bool = True,
    fid: Callable[[np.ndarray], float] | None = None,
    fid_generate: Callable[[], np.ndarray] | None = None,
    on_progress: Callable[[str], None] | None = None,
) -> BenchResult:
    """Uncached first, then each config; CPU-time medians of ``repeats`` calls of seed 0."""
    say = on_progress or (lambda _msg: None)
    pipe = model.pipe
    api.disable_cache(pipe)
    say("uncached")
    base_cpu, base_samples, reference = median_cpu_time(lambda: model.generate(0), repeats)
    with count_block_executions(model.transformer, model.block_lists) as counted:
        model.generate(0)
    uncached_calls = counted["calls"] // model.num_blocks
    rows = [BenchRow("uncached", "none", 0, uncached_calls, 1.0, base_cpu, 1.0, float("inf"), 1.0,
                     0.0 if model.output_kind == "images" and with_lpips else float("nan"),
                     fid(fid_generate()) if fid else None, base_samples)]
    images = {"uncached": reference}
    try:
        for config in configs:
            say(config.name)
            api.enable_cache(pipe, **config.options)
            cpu, samples, out = median_cpu_time(lambda: model.generate(0), repeats)
            (summary,) = api.summary(pipe)
            streams = summary.streams.values()
            cached = sum(len(s.cached_steps) for s in streams)
            kept = sum(s.blocks_run for s in streams) / max(1, sum(s.blocks_total for s in streams))
            q = quality(reference, out, model.output_kind, with_lpips)
            rows.append(BenchRow(
                config.name, summary.tag, cached, sum(s.steps for s in streams), kept, cpu,
                base_cpu / cpu, q["psnr"], q["ssim"], q["lpips"],
                fid(fid_generate()) if fid else None, samples,
            ))
            images[config.name] = out
    finally:
        api.disable_cache(pipe)
    return BenchResult(model.name, model.steps, len(reference), repeats, rows, images, model.notes)
