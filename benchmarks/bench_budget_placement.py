"""Where a compute budget's computes go: an ablation of the budget rule's placement, side by side
with fixed-threshold configurations at the same seeds.

    PYTHONPATH=src python benchmarks/bench_budget_placement.py [--models reference,medium-flux]
        [--seeds 0 1 2] [--out benchmarks/results/budget_placement_<models>.md]

Every row runs the same calls (reference: 10 classes per call, CFG 2.5, decoded images; medium
FLUX: latents), FoCa as the stand-in. x = block executions kept (counted from real executions),
y = PSNR against the uncached output of the same seed, averaged over seeds. The placements:

- ``before``: the rule as first shipped (15% head, rate from step 1 on, last step forced, paced
  by the accumulated change);
- one change at a time towards ``now`` (the defaults of :class:`cache_dit.rules.budget.Placement`);
- ``now``.

The last table compares ``now`` with the best fixed-threshold row that keeps no more compute
(issue 10, item 3). The placement is swapped into the controller after ``enable_cache`` (our own
object, before its first call creates any stream state); nothing is patched.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import frontier_common as common  # noqa: E402

import cache_dit  # noqa: E402
from cache_dit.bench.runner import quality  # noqa: E402
from cache_dit.plan import Mode  # noqa: E402
from cache_dit.rules.budget import BudgetRule, Placement  # noqa: E402

BUDGETS = (0.3, 0.4, 0.5, 0.6, 0.7)
NOW = Placement()
BEFORE = Placement(head_fraction=0.15, first_paced_step=1, force_last_step=True,
                   paced_by="accumulated")
# One change at a time, in this order, from BEFORE to NOW.
STEPS = (("+ rate from step 2", "first_paced_step"), ("+ 25% head", "head_fraction"),
         ("+ last step free", "force_last_step"), ("now (+ paced by first steps)", "paced_by"))


def _placements() -> dict[str, Placement]:
    placements, current = {"before": BEFORE}, BEFORE
    for label, field in STEPS:
        current = dataclasses.replace(current, **{field: getattr(NOW, field)})
        placements[label] = current
    assert current == NOW
    return placements


PLACEMENTS = _placements()
NOW_LABEL = STEPS[-1][0]
# FoCa at F1B0, the frontier benchmark's stand-in of choice, over warmup x threshold.
FIXED = {"reference": [(w, r) for w in (2, 4, 8) for r in (0.08, 0.12, 0.16, 0.24, 0.32)],
         "medium-flux": [(4, r) for r in (0.03, 0.05, 0.065, 0.08, 0.12, 0.2)]}
BASE = dict(Fn_compute_blocks=1, Bn_compute_blocks=0, calibrator="foca")


def _with_placement(pipe: Any, placement: Placement) -> None:
    for controller in cache_dit.api._session_of(pipe).controllers:
        plan = controller.plan
        controller.rule = BudgetRule(controller.options.compute_budget, plan.num_blocks,
                                     plan.kept[Mode.CACHE], placement)


def _pattern(pipe: Any, steps: int) -> str:
    cached = set(cache_dit.summary(pipe)[0].cached_steps)
    return "".join("." if step in cached else "C" for step in range(steps))


def measure(model: Any, seeds: list[int], reference: list[np.ndarray], options: dict,
            placement: Placement | None = None) -> dict:
    cache_dit.enable_cache(model.pipe, **options)
    try:
        if placement is not None:
            _with_placement(model.pipe, placement)
        outputs, kept, _ = common.timed_run(model, seeds)
        pattern = _pattern(model.pipe, model.steps)  # of the last seed
    finally:
        cache_dit.disable_cache(model.pipe)
    return {"kept": kept, "psnr": mean_psnr(model, reference, outputs), "pattern": pattern}


def mean_psnr(model: Any, reference: list[np.ndarray], outputs: list[np.ndarray]) -> float:
    """PSNR against the uncached output of the same seed, averaged over seeds."""
    return float(np.mean([quality(ref, out, model.output_kind, with_lpips=False)["psnr"]
                          for ref, out in zip(reference, outputs)]))


def run_model(name: str, seeds: list[int], log) -> list[str]:
    model = common.build_model(name, 10 if name == "reference" else 1, 28)
    reference, _, _ = common.timed_run(model, seeds)
    budget_rows = {}
    for label, placement in PLACEMENTS.items():
        for budget in BUDGETS:
            row = measure(model, seeds, reference, dict(BASE, compute_budget=budget), placement)
            budget_rows[label, budget] = row
            log(f"  {name} {label} {budget}: kept {row['kept']:.3f}, {row['psnr']:.2f} dB {row['pattern']}")
    fixed_rows = []
    for warmup, threshold in FIXED[name]:
        row = measure(model, seeds, reference,
                      dict(BASE, warmup_steps=warmup, residual_diff_threshold=threshold))
        fixed_rows.append(dict(row, knobs=f"W{warmup} R{threshold:g}"))
        log(f"  {name} fixed W{warmup} R{threshold:g}: kept {row['kept']:.3f}, {row['psnr']:.2f} dB")
    lines = [f"## {name}: {common.num_blocks(model)} blocks, {model.steps} steps, seeds {seeds}", "",
             "PSNR (dB) at each budget; kept fraction and computed steps (C) of the last seed below.",
             "", "| placement | " + " | ".join(f"{b:g}" for b in BUDGETS) + " |",
             "|---|" + "---|" * len(BUDGETS)]
    for label in PLACEMENTS:
        cells = [f"{budget_rows[label, b]['psnr']:.2f}" for b in BUDGETS]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines += ["", "| placement | budget | kept | computed steps |", "|---|---|---|---|"]
    for (label, budget), row in budget_rows.items():
        lines.append(f"| {label} | {budget:g} | {row['kept']:.3f} | `{row['pattern']}` |")
    lines += ["", "Budget (now) against the best fixed threshold (FoCa, warmup x threshold grid) that "
              "keeps no more compute:", "",
              "| budget | kept | PSNR | best fixed at <= kept | its kept | its PSNR | margin |",
              "|---|---|---|---|---|---|---|"]
    for budget in BUDGETS:
        row = budget_rows[NOW_LABEL, budget]
        fits = [f for f in fixed_rows if f["kept"] <= row["kept"] + 1e-9]
        best = max(fits, key=lambda f: f["psnr"], default=None)
        if best is None:
            lines.append(f"| {budget:g} | {row['kept']:.3f} | {row['psnr']:.2f} | none | | | |")
            continue
        margin = row["psnr"] - best["psnr"]
        lines.append(f"| {budget:g} | {row['kept']:.3f} | {row['psnr']:.2f} | {best['knobs']} | "
                     f"{best['kept']:.3f} | {best['psnr']:.2f} | {margin:+.2f} |")
    lines += ["", "All fixed rows: " + ", ".join(
        f"{f['knobs']} {f['kept']:.3f}/{f['psnr']:.2f}" for f in sorted(fixed_rows, key=lambda f: f["kept"])), ""]
    return lines


def write_markdown(path: Path, text: list[str], started: float) -> None:
    """Close ``text`` with the wall time since ``started``, write it to ``path`` and print it."""
    text.append(f"Wall time: {time.time() - started:.0f} s.")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(text) + "\n")
    print("\n".join(text))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="reference")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    results = Path(__file__).resolve().parent / "results"
    args.out = args.out or results / f"budget_placement_{args.models.replace(',', '_')}.md"
    torch.set_num_threads(1)
    started = time.time()
    text = [f"# Budget placement ablation ({time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC, "
            f"torch {torch.__version__}, 1 thread)", "", __doc__.split("\n\n")[2], ""]
    for name in args.models.split(","):
        text += run_model(name.strip(), args.seeds, lambda line: print(line, flush=True))
    write_markdown(args.out, text, started)


if __name__ == "__main__":
    main()
