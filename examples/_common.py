"""Shared code of the examples: arguments, one uncached and one cached run, timing, saving, PSNR.

Every ``examples/run_*.py`` describes its model family in a :class:`Family` and calls
:func:`main`. With a GPU, ``python examples/run_flux.py`` loads the real checkpoint
(``--model-id`` to pick another), generates once uncached and once with cache-dit, prints both
times and :func:`cache_dit.summary`, and saves the two outputs side by side with their PSNR.
``--tiny`` runs the same pipeline classes offline on a tiny random-weight configuration
(:mod:`cache_dit.testing.tiny_pipelines`), so the script can be checked without a download.
"""

from __future__ import annotations

import argparse
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

import cache_dit

__all__ = ["Family", "main", "psnr"]

# Offline runs: thresholds for random weights (their residuals move far more than trained ones)
# and a short warm-up, so the tiny run really caches steps.
TINY_OPTIONS = {"Fn_compute_blocks": 1, "Bn_compute_blocks": 0, "residual_diff_threshold": 1.0,
                "warmup_steps": 2}


@dataclass(frozen=True)
class Family:
    """One seed model family: its diffusers pipeline, checkpoint and call."""

    name: str  # file stem of the outputs
    pipeline: str  # diffusers pipeline class name
    model_id: str  # default checkpoint on the Hugging Face Hub
    tiny: str  # case name in cache_dit.testing.tiny_pipelines
    call: dict[str, Any]  # pipeline keyword arguments of the real run
    inputs: dict[str, str] = field(default_factory=dict)  # image argument -> default path/URL
    options: dict[str, Any] = field(default_factory=dict)  # cache options of the real run


def build_parser(family: Family) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=f"{family.pipeline} with cache-dit: uncached vs "
                                                 f"cached, time, summary and PSNR")
    parser.add_argument("--model-id", default=family.model_id, help=f"default {family.model_id}")
    parser.add_argument("--tiny", action="store_true",
                        help="offline: a tiny random-weight pipeline of the same classes")
    parser.add_argument("--steps", type=int, help="num_inference_steps (default: the family's)")
    parser.add_argument("--prompt", help="replace the family's prompt")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16", "float32"])
    parser.add_argument("--cpu-offload", action="store_true", help="enable_model_cpu_offload()")
    parser.add_argument("--out", default="examples_out", help="output folder")
    for name in family.inputs:
        parser.add_argument(f"--{name.replace('_', '-')}", dest=name,
                            help=f"path or URL (default {family.inputs[name]})")
    cache = parser.add_argument_group("cache options (default: the family's, or tiny ones)")
    cache.add_argument("--Fn", type=int, dest="Fn_compute_blocks")
    cache.add_argument("--Bn", type=int, dest="Bn_compute_blocks")
    cache.add_argument("--threshold", type=float, dest="residual_diff_threshold")
    cache.add_argument("--warmup", type=int, dest="warmup_steps")
    cache.add_argument("--max-cached-steps", type=int, dest="max_cached_steps")
    cache.add_argument("--taylorseer", type=int, metavar="ORDER",
                       help="TaylorSeer of this order on both streams (0: off)")
    return parser


def cache_options(family: Family, args: argparse.Namespace) -> dict[str, Any]:
    options = dict(TINY_OPTIONS if args.tiny else family.options)
    for name in ("Fn_compute_blocks", "Bn_compute_blocks", "residual_diff_threshold",
                 "warmup_steps", "max_cached_steps"):
        if getattr(args, name) is not None:
            options[name] = getattr(args, name)
    if args.taylorseer:
        options.update(enable_taylorseer=True, enable_encoder_taylorseer=True,
                       taylorseer_kwargs={"n_derivatives": args.taylorseer})
    return options


def load(family: Family, args: argparse.Namespace) -> tuple[Any, dict[str, Any]]:
    """(pipeline, call kwargs) of the real checkpoint, or of the tiny case with ``--tiny``."""
    if args.tiny:
        from cache_dit.testing.tiny_pipelines import build

        torch.set_num_threads(1)
        case = build(family.tiny)
        kwargs = dict(case.call_kwargs)
    else:
        import diffusers
        from diffusers.utils import load_image

        dtype = getattr(torch, args.dtype)
        pipe = getattr(diffusers, family.pipeline).from_pretrained(args.model_id, torch_dtype=dtype)
        if args.cpu_offload:
            pipe.enable_model_cpu_offload()
        else:
            pipe.to(args.device)
        kwargs = {**family.call, "output_type": "np"}
        for name, default in family.inputs.items():
            kwargs[name] = load_image(getattr(args, name) or default)
        if args.prompt:
            kwargs["prompt"] = args.prompt
        return pipe, {**kwargs, **({"num_inference_steps": args.steps} if args.steps else {})}
    if args.steps:
        kwargs["num_inference_steps"] = args.steps
    return case.pipe, kwargs


def generate(pipe: Any, kwargs: dict[str, Any], seed: int, device: str) -> tuple[np.ndarray, float]:
    """(output as a float array, wall seconds) of one seeded call."""
    generator = torch.Generator("cpu").manual_seed(seed)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    start = time.perf_counter()
    with torch.no_grad():
        out = pipe(generator=generator, **kwargs)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    value = out.frames if hasattr(out, "frames") else out.images
    if isinstance(value, torch.Tensor):
        value = value.float().cpu().numpy()
    return np.asarray(value, dtype=np.float32), seconds


def psnr(reference: np.ndarray, other: np.ndarray) -> float:
    """PSNR in dB; range 1 for pixels in [0, 1], else the reference's peak-to-peak (latents)."""
    if reference.shape != other.shape:
        raise ValueError(f"outputs differ in shape: {reference.shape} vs {other.shape}")
    in_unit = reference.min() >= 0 and reference.max() <= 1
    span = 1.0 if in_unit else float(reference.max() - reference.min())
    mse = float(np.mean((reference.astype(np.float64) - other) ** 2))
    return float("inf") if mse == 0 else 10 * math.log10(span**2 / mse)


def save(array: np.ndarray, path: Path) -> Path:
    """First image as PNG, first video as MP4 (GIF without a video writer), latents as .npy."""
    sample = array[0]
    pixels = sample.shape[-1] == 3 and sample.min() >= 0 and sample.max() <= 1
    if not pixels or sample.ndim not in (3, 4):
        np.save(path.with_suffix(".npy"), array)
        return path.with_suffix(".npy")
    from PIL import Image

    frames = [Image.fromarray((f * 255).round().astype(np.uint8)) for f in
              (sample if sample.ndim == 4 else sample[None])]
    if len(frames) == 1:
        frames[0].save(path.with_suffix(".png"))
        return path.with_suffix(".png")
    import importlib.util

    if any(importlib.util.find_spec(m) for m in ("imageio_ffmpeg", "cv2")):
        from diffusers.utils import export_to_video

        export_to_video(frames, str(path.with_suffix(".mp4")), fps=8)
        return path.with_suffix(".mp4")
    frames[0].save(path.with_suffix(".gif"), save_all=True, append_images=frames[1:], duration=125)
    return path.with_suffix(".gif")


def main(family: Family, argv: Sequence[str] | None = None) -> int:
    parser = build_parser(family)
    args = parser.parse_args(argv)
    given = [f"--{n.replace('_', '-')}" for n in ("prompt", *family.inputs) if getattr(args, n)]
    if args.tiny and given:
        parser.error(f"{', '.join(given)}: the tiny pipeline has no text encoder and fixed inputs; "
                     f"drop them or --tiny")
    device = "cpu" if args.tiny else args.device
    pipe, kwargs = load(family, args)
    options = cache_options(family, args)
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)

    cache_dit.disable_cache(pipe)
    # an untimed 2-step call first: CUDA context, kernel choice and allocations would otherwise
    # land on the uncached run and inflate the speedup
    generate(pipe, {**kwargs, "num_inference_steps": 2}, args.seed, device)
    uncached, base_s = generate(pipe, kwargs, args.seed, device)
    cache_dit.enable_cache(pipe, **options)
    try:
        cached, cached_s = generate(pipe, kwargs, args.seed, device)
        stats = cache_dit.summary(pipe)
    finally:
        cache_dit.disable_cache(pipe)
    for item in stats:
        print(item)
    tag = stats[0].tag
    paths = [save(uncached, out_dir / f"{family.name}_uncached"),
             save(cached, out_dir / f"{family.name}_{tag}")]
    where = "tiny (offline, random weights)" if args.tiny else args.model_id
    print(f"{family.pipeline} [{where}], {kwargs.get('num_inference_steps')} steps: uncached "
          f"{base_s:.2f} s, cached {cached_s:.2f} s ({base_s / cached_s:.2f}x), "
          f"PSNR {psnr(uncached, cached):.2f} dB, cached steps "
          f"{sum(len(s.cached_steps) for st in stats for s in st.streams.values())}")
    print("saved " + ", ".join(os.fspath(p) for p in paths))
    return 0
