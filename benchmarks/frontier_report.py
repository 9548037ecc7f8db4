"""Frontier-benchmark output: the CSV, one Pareto PNG per model and the markdown tables.

A row is one configuration of one library on one model: kept (fraction of block executions that
ran), speedup (uncached / cached process CPU time), PSNR and LPIPS against the uncached output of
the same seed. The tables read the Pareto front: the best PSNR any configuration of a library
reaches with at most a given kept fraction, and the least kept fraction that reaches a PSNR target.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Iterable, Sequence

FIELDS = ("model", "library", "method", "knobs", "kept", "speedup", "cpu_s", "uncached_cpu_s",
          "psnr", "lpips", "error")
KEPT_LEVELS = (0.3, 0.4, 0.5, 0.6, 0.7)
# Decoded images of the reference models sit at 25-50 dB; latents of the random FLUX at 70-95 dB.
PSNR_TARGETS = {"reference": (30.0, 35.0, 40.0, 45.0), "deep-reference": (30.0, 35.0, 40.0, 45.0),
                "medium-flux": (75.0, 80.0, 85.0, 90.0)}


COLORS = {"ours": "C0", "cache-dit 1.5.3": "C1", "diffusers": "C2"}  # the same in every plot


def write_csv(rows: Iterable[dict], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=FIELDS, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: (f"{row[k]:.6g}" if isinstance(row.get(k), float) else row.get(k, ""))
                             for k in FIELDS})


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    for row in rows:
        for key in ("kept", "speedup", "cpu_s", "uncached_cpu_s", "psnr", "lpips"):
            row[key] = float(row[key]) if row.get(key) not in (None, "") else math.nan
    return rows


def _valid(rows: Iterable[dict]) -> list[dict]:
    return [r for r in rows if not r.get("error") and math.isfinite(r["kept"])
            and not math.isnan(r["psnr"])]


def best_psnr_at(rows: Sequence[dict], kept: float) -> dict | None:
    """The row with the highest PSNR among those keeping at most ``kept`` of the blocks."""
    fitting = [r for r in _valid(rows) if r["kept"] <= kept + 1e-9]
    return max(fitting, key=lambda r: (r["psnr"], -r["kept"]), default=None)


def least_kept_for(rows: Sequence[dict], psnr: float) -> dict | None:
    """The row with the smallest kept fraction among those reaching ``psnr`` dB."""
    reaching = [r for r in _valid(rows) if r["psnr"] >= psnr]
    return min(reaching, key=lambda r: (r["kept"], -r["psnr"]), default=None)


def pareto(rows: Sequence[dict]) -> list[dict]:
    """Rows no other row beats on both kept (lower) and PSNR (higher), by kept."""
    front, best = [], -math.inf
    for row in sorted(_valid(rows), key=lambda r: (r["kept"], -r["psnr"])):
        if row["psnr"] > best:
            front.append(row)
            best = row["psnr"]
    return front


def _libraries(rows: Sequence[dict]) -> list[str]:
    return list(dict.fromkeys(r["library"] for r in rows))


def _fmt_psnr(row: dict | None) -> str:
    if row is None:
        return "-"
    return "identical" if math.isinf(row["psnr"]) else f"{row['psnr']:.1f}"


def markdown(rows: Sequence[dict], header: str = "") -> str:
    """Per model: best PSNR at kept <= level, least kept at PSNR targets, and the winning knobs."""
    lines = [header] if header else []
    for model in dict.fromkeys(r["model"] for r in rows):
        mine = [r for r in rows if r["model"] == model]
        libs = _libraries(mine)
        lines += ["", f"### {model}", "",
                  "| best PSNR (dB) at kept <= | " + " | ".join(f"{k:g}" for k in KEPT_LEVELS) + " |",
                  "|---|" + "---|" * len(KEPT_LEVELS)]
        notes = []
        for lib in libs:
            picks = [best_psnr_at([r for r in mine if r["library"] == lib], k) for k in KEPT_LEVELS]
            lines.append(f"| {lib} | " + " | ".join(_fmt_psnr(p) for p in picks) + " |")
            for level, pick in zip(KEPT_LEVELS, picks):
                if pick is not None:
                    notes.append(f"{lib} <= {level:g}: {pick['method']} {pick['knobs']} "
                                 f"(kept {pick['kept']:.3f}, {pick['speedup']:.2f}x CPU, "
                                 f"LPIPS {pick['lpips']:.4f})")
        targets = PSNR_TARGETS.get(model, (30.0, 35.0, 40.0, 45.0))
        lines += ["", "| least kept (CPU speedup) at PSNR >= | "
                  + " | ".join(f"{t:g} dB" for t in targets) + " |",
                  "|---|" + "---|" * len(targets)]
        for lib in libs:
            picks = [least_kept_for([r for r in mine if r["library"] == lib], t) for t in targets]
            lines.append(f"| {lib} | " + " | ".join(
                "-" if p is None else f"{p['kept']:.3f} ({p['speedup']:.2f}x)" for p in picks) + " |")
        failed = [r for r in mine if r.get("error")]
        lines += ["", f"{len(mine)} configurations, {len(failed)} failed"
                  + "".join(f"; {r['library']} {r['knobs']}: {r['error']}" for r in failed[:5]) + ".",
                  "", "<details><summary>winning configurations</summary>", ""]
        lines += [f"- {n}" for n in notes] + ["", "</details>"]
    return "\n".join(lines) + "\n"


def plot(rows: Sequence[dict], model: str, path: Path, title: str = "") -> None:
    """PSNR vs kept for every configuration of ``model``, with each library's Pareto front."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    mine = [r for r in _valid(rows) if r["model"] == model and math.isfinite(r["psnr"])]
    fig, ax = plt.subplots(figsize=(7.5, 5))
    for index, lib in enumerate(_libraries(mine)):
        color = COLORS.get(lib, f"C{index + len(COLORS)}")
        points = [r for r in mine if r["library"] == lib]
        ax.scatter([r["kept"] for r in points], [r["psnr"] for r in points], s=12, alpha=0.35,
                   color=color)
        front = pareto(points)
        ax.step([r["kept"] for r in front], [r["psnr"] for r in front], where="post", color=color,
                label=f"{lib} ({len(points)} configs)")
    ax.set_xlabel("fraction of block executions kept (counted)")
    ax.set_ylabel("PSNR vs uncached, same seed (dB)")
    ax.set_title(title or f"{model}: speed/quality frontier")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
