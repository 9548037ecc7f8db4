#!/usr/bin/env python
"""Write the 10-class sample grid of the reference model (one row per Fashion-MNIST class).

    .venv/bin/python scripts/sample_grid.py --out assets/reference_samples.png
    .venv/bin/python scripts/sample_grid.py --variant deep      # assets/reference_deep_samples.png
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "src"))

from cache_dit.reference import FASHION_MNIST_CLASSES, REFERENCE_VARIANTS, FashionFluxPipeline  # noqa: E402


def sample_grid(
    pipe: FashionFluxPipeline,
    per_class: int = 10,
    seed: int = 0,
    num_inference_steps: int = 28,
    guidance_scale: float | None = None,
    scale: int = 3,
) -> Image.Image:
    """Generate `per_class` images for every class and lay them out as a labelled grid (classes are rows)."""
    kwargs = {} if guidance_scale is None else {"guidance_scale": guidance_scale}
    images = pipe(
        list(range(len(FASHION_MNIST_CLASSES))),
        num_images_per_prompt=per_class,
        num_inference_steps=num_inference_steps,
        generator=torch.Generator().manual_seed(seed),
        output_type="np",
        **kwargs,
    ).images
    tile, pad, label_width = 28 * scale, 2, 110
    rows = len(FASHION_MNIST_CLASSES)
    grid = Image.new("L", (label_width + per_class * (tile + pad) + pad, rows * (tile + pad) + pad), color=255)
    draw = ImageDraw.Draw(grid)
    font = ImageFont.load_default()
    for row, name in enumerate(FASHION_MNIST_CLASSES):
        top = pad + row * (tile + pad)
        draw.text((6, top + tile // 2 - 6), name, fill=0, font=font)
        for col in range(per_class):
            pixels = (images[row * per_class + col, :, :, 0] * 255).round().astype(np.uint8)
            tile_image = Image.fromarray(pixels, mode="L").resize((tile, tile), Image.NEAREST)
            grid.paste(tile_image, (label_width + pad + col * (tile + pad), top))
    return grid


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variant", choices=REFERENCE_VARIANTS, default="base", help="which reference model")
    parser.add_argument("--out", type=Path, default=None, help="default: assets/reference[_<variant>]_samples.png")
    parser.add_argument("--per-class", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=28)
    parser.add_argument("--guidance-scale", type=float, default=None, help="default: the pipeline's default")
    parser.add_argument("--scale", type=int, default=3, help="nearest-neighbour upscaling of each 28x28 sample")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    if args.out is None:
        stem = "reference" if args.variant == "base" else f"reference_{args.variant}"
        args.out = REPO_ROOT / f"assets/{stem}_samples.png"
    pipe = FashionFluxPipeline.from_reference(args.variant)
    pipe.set_progress_bar_config(desc="sampling")
    grid = sample_grid(pipe, args.per_class, args.seed, args.steps, args.guidance_scale, args.scale)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    grid.save(args.out, optimize=True)
    print(f"wrote {args.out} ({grid.size[0]}x{grid.size[1]})")


if __name__ == "__main__":
    main()
