"""Benchmark output: a printed table, CSV/JSON files, a Pareto plot and an image grid."""

from __future__ import annotations

import csv
import json
import math
import os
from pathlib import Path

import numpy as np

from .runner import BenchResult

__all__ = ["format_table", "write_outputs"]

_COLUMNS = [
    ("config", "config", "{}"),
    ("tag", "tag", "{}"),
    ("cached", "cached_steps", "{}"),
    ("calls", "transformer_calls", "{}"),
    ("blocks", "blocks_fraction", "{:.1%}"),
    ("cpu s", "cpu_s", "{:.2f}"),
    ("speedup", "speedup", "{:.2f}x"),
    ("min-max", "spread", "{}"),
    ("expected", "expected", "{:.2f}x"),
    ("", "flag", "{}"),
    ("overhead", "overhead", "{:+.1%}"),
    ("PSNR", "psnr", "{:.2f}"),
    ("SSIM", "ssim", "{:.4f}"),
    ("LPIPS", "lpips", "{:.4f}"),
    ("FID", "fid", "{:.2f}"),
]


def _cell(fmt: str, value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and math.isinf(value):
        return "inf"
    if isinstance(value, float) and math.isnan(value):
        return "-"
    return fmt.format(value)


def format_table(result: BenchResult) -> str:
    columns = [c for c in _COLUMNS if c[1] != "fid" or any(r.fid is not None for r in result.rows)]
    rows = [[_cell(fmt, getattr(row, key)) for _, key, fmt in columns] for row in result.rows]
    heads = [head for head, _, _ in columns]
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(heads)]
    line = lambda cells: "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths)) + " |"
    out = [line(heads), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out += [line(r) for r in rows]
    return "\n".join(out)


def _grid(result: BenchResult, path: Path, per_row: int = 10) -> None:
    from PIL import Image, ImageDraw

    names = list(result.images)
    first = result.images[names[0]]
    count = min(per_row, len(first))
    h, w = first.shape[1:3]
    scale = max(1, 64 // h)
    label_w = 150
    canvas = Image.new("RGB", (label_w + count * w * scale, len(names) * h * scale), "white")
    draw = ImageDraw.Draw(canvas)
    for r, name in enumerate(names):
        draw.text((4, r * h * scale + 4), name[:22], fill="black")
        for c in range(count):
            img = result.images[name][c]
            if img.shape[-1] not in (1, 3):  # latents: first three channels, min-max scaled
                img = img[..., :3]
                img = (img - img.min()) / max(float(img.max() - img.min()), 1e-12)
            if img.shape[-1] == 1:
                img = np.repeat(img, 3, axis=-1)
            tile = Image.fromarray((img * 255).round().astype(np.uint8)).resize(
                (w * scale, h * scale), Image.NEAREST)
            canvas.paste(tile, (label_w + c * w * scale, r * h * scale))
    canvas.save(path)


def _pareto(result: BenchResult, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for row in result.rows[1:]:
        psnr = row.psnr if math.isfinite(row.psnr) else 60.0
        ax.scatter(row.speedup, psnr)
        ax.annotate(row.config, (row.speedup, psnr), fontsize=7, xytext=(4, 2),
                    textcoords="offset points")
    ax.axvline(1.0, color="grey", lw=0.5)
    ax.set_xlabel("speedup vs uncached (CPU time)")
    ax.set_ylabel("PSNR vs uncached (dB)")
    ax.set_title(f"cache-dit on {result.model}, {result.steps} steps")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_outputs(result: BenchResult, out_dir: str | os.PathLike) -> dict[str, Path]:
    """Write table.csv, table.json, pareto.png, grid.png into ``out_dir``; return their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {name: out / name for name in ("table.csv", "table.json", "pareto.png", "grid.png")}
    rows = [row.as_dict() for row in result.rows]
    with open(paths["table.csv"], "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=[k for k in rows[0] if k != "cpu_samples"])
        writer.writeheader()
        for row in rows:
            writer.writerow({k: v for k, v in row.items() if k != "cpu_samples"})
    meta = {"model": result.model, "steps": result.steps, "samples": result.samples,
            "repeats": result.repeats, "warmup": result.warmup,
            "block_share": result.block_share, "notes": result.notes}
    strict = [{k: (str(v) if isinstance(v, float) and not math.isfinite(v) else v)
               for k, v in row.items()} for row in rows]  # "inf" PSNR stays readable in JSON
    with open(paths["table.json"], "w", encoding="utf-8") as handle:
        json.dump({**meta, "rows": strict}, handle, indent=2)
    _pareto(result, paths["pareto.png"])
    _grid(result, paths["grid.png"])
    return paths
