"""How a probe-free budget's computes should be laid out: ``budget_spacing`` swept per model, side
by side with diffusers' fixed-interval TaylorSeer at the same seeds.

    PYTHONPATH=src python benchmarks/bench_probe_free_spacing.py [--models reference,deep-reference]
        [--seeds 0 1] [--spacings 1 1.5] [--budgets 0.3 0.5] [--out benchmarks/results/probe_free_spacing.md]

With ``Fn_compute_blocks=0`` nothing is measured on a cached step, so where a budget computes is
fixed before the first step (:func:`cache_dit.rules.budget.probe_free_steps`, for budgets that
compute at most 60% of the steps): the i-th of C computes at ``(i/(C-1))**spacing`` of the way to
the second-last step. Every row runs the same
calls (reference models: 10 classes per call, CFG 2.5, decoded images; medium FLUX: latents), the
FoCa stand-in (residual). x = block executions kept (counted from real executions), y = PSNR
against the uncached output of the same seed, averaged over seeds. diffusers' TaylorSeerCache is
pointed at whole blocks, float32 factors, as in the frontier benchmark.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import frontier_common as common  # noqa: E402
from bench_budget_placement import mean_psnr, measure, write_markdown  # noqa: E402

BUDGETS = (0.3, 0.4, 0.5, 0.58)  # 8, 11, 14, 16 of 28 steps (above 60% the spacing is unused)
SPACINGS = (1.0, 1.25, 1.5, 1.75, 2.0)
DIFFUSERS = [(n, order, before) for n in (2, 3, 4) for order in (1, 2) for before in (3, 5)]


def diffusers_row(model, seeds, reference, interval: int, order: int, before: int) -> dict:
    import frontier_diffusers

    spec = {"kind": "taylorseer", "cache_interval": interval, "max_order": order,
            "disable_cache_before_step": before}
    # the calibration seed is only read by MagCache entries
    [method] = frontier_diffusers.methods(model, [("TaylorSeerCache", spec)], calibration_seed=1000)
    method.enable()
    try:
        outputs, kept, _ = common.timed_run(model, seeds)
    finally:
        method.disable()
    return {"kept": kept, "psnr": mean_psnr(model, reference, outputs),
            "knobs": f"interval {interval}, order {order}, from {before}"}


def run_model(name: str, seeds: list[int], log, spacings: tuple[float, ...] = SPACINGS,
              budgets: tuple[float, ...] = BUDGETS) -> list[str]:
    model = common.build_model(name, 1 if name == "medium-flux" else 10, 28)
    return sweep(model, seeds, log, spacings, budgets)


def sweep(model, seeds: list[int], log, spacings: tuple[float, ...], budgets: tuple[float, ...],
          peers_grid: list[tuple[int, int, int]] = DIFFUSERS) -> list[str]:
    """Markdown lines: every spacing x budget (FoCa) and diffusers' ``peers_grid`` on ``model``."""
    name = model.name
    reference, _, _ = common.timed_run(model, seeds)
    rows = {}
    for spacing in spacings:
        for budget in budgets:
            options = dict(Fn_compute_blocks=0, Bn_compute_blocks=0, calibrator="foca",
                           compute_budget=budget, budget_spacing=spacing)
            rows[spacing, budget] = row = measure(model, seeds, reference, options)
            log(f"  {name} spacing {spacing} budget {budget}: kept {row['kept']:.3f}, "
                f"{row['psnr']:.2f} dB {row['pattern']}")
    peers = []
    for interval, order, before in peers_grid:
        peers.append(row := diffusers_row(model, seeds, reference, interval, order, before))
        log(f"  {name} diffusers {row['knobs']}: kept {row['kept']:.3f}, {row['psnr']:.2f} dB")
    kept = [rows[spacings[0], b]["kept"] for b in budgets]
    lines = [f"## {name}: {common.num_blocks(model)} blocks, {model.steps} steps, seeds {seeds}", "",
             "PSNR (dB), FoCa; the last row: diffusers' best TaylorSeerCache at no more compute.", "",
             "| budget_spacing | " + " | ".join(f"{b:g} ({k:.3f} kept)" for b, k in zip(budgets, kept)) + " |",
             "|---|" + "---|" * len(budgets)]
    for spacing in spacings:
        cells = [rows[spacing, b]["psnr"] for b in budgets]
        best = [max(rows[s, b]["psnr"] for s in spacings) for b in budgets]
        lines.append(f"| {spacing:g} | " + " | ".join(
            f"**{c:.2f}**" if c == top else f"{c:.2f}" for c, top in zip(cells, best)) + " |")
    cells = []
    for k in kept:
        fits = [p for p in peers if p["kept"] <= k + 1e-9]
        best = max(fits, key=lambda p: p["psnr"], default=None)
        cells.append("none" if best is None else f"{best['psnr']:.2f} ({best['knobs']}, {best['kept']:.3f})")
    lines += ["| diffusers | " + " | ".join(cells) + " |", "",
              "| budget_spacing | budget | computed steps (C) |", "|---|---|---|"]
    lines += [f"| {s:g} | {b:g} | `{rows[s, b]['pattern']}` |" for s in spacings for b in budgets]
    return lines + [""]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="reference,deep-reference")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--spacings", type=float, nargs="+", default=list(SPACINGS))
    parser.add_argument("--budgets", type=float, nargs="+", default=list(BUDGETS))
    parser.add_argument("--out", type=Path,
                        default=Path(__file__).resolve().parent / "results" / "probe_free_spacing.md")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    started = time.time()
    text = [f"# Probe-free budget layout ({time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC, "
            f"torch {torch.__version__}, 1 thread)", "", __doc__.split("\n\n")[2], ""]
    for name in args.models.split(","):
        text += run_model(name.strip(), args.seeds, lambda line: print(line, flush=True),
                          tuple(args.spacings), tuple(args.budgets))
    write_markdown(args.out, text, started)


if __name__ == "__main__":
    main()
