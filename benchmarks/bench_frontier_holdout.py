"""Do the frontier's winners hold on seeds they were not picked on?

    PYTHONPATH=src .venv/bin/python benchmarks/bench_frontier_holdout.py
        [--models reference,deep-reference,medium-flux] [--seeds 1 2 3] [--out DIR]

bench_frontier.py picks, per library, the configuration that wins each cell of its two tables
(best PSNR at kept <= level; least kept at a PSNR target) on its own seeds, so its margins carry
the luck of those seeds. This reads frontier.csv, takes every library's Pareto front there (up
to kept 0.85; it holds all the winners), rebuilds those configurations from the grids by their
knobs, runs them again on held-out seeds with the same counters and scores, and writes
holdout.md and holdout.csv to --out (default: the frontier's folder). Per kept level: each
library's winner, not re-picked, on the held-out seeds (kept can move where decisions depend on
the data) and ours' margin over the best peer seed by seed (mean and worst). Per PSNR target:
the least kept among each library's front whose held-out mean reaches it (a re-pick within the
front, for every library alike), and ours' ratio to the best peer's.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_frontier as frontier  # noqa: E402
import frontier_common as common  # noqa: E402
import frontier_grids as grids  # noqa: E402
import frontier_report as report  # noqa: E402

OURS, PEERS = frontier.LABELS["ours"], (frontier.LABELS["cache-dit"], frontier.LABELS["diffusers"])


MAX_KEPT = 0.85  # the fronts are re-run up to here: every target any library reaches below uncached


def picks_of(rows: list[dict], model: str) -> dict[str, dict[str, Any]]:
    """Per library, from the frontier's seeds: the winner of each cell, as {"levels": {level:
    row}, "targets": {target: row}} (a row or None), and "front": its Pareto front up to
    MAX_KEPT, which holds every winner."""
    mine = [r for r in rows if r["model"] == model]
    out = {}
    for lib in dict.fromkeys(r["library"] for r in mine):
        theirs = [r for r in mine if r["library"] == lib]
        out[lib] = {"levels": {k: report.best_psnr_at(theirs, k) for k in report.KEPT_LEVELS},
                    "targets": {t: report.least_kept_for(theirs, t)
                                for t in report.PSNR_TARGETS[model]},
                    "front": [r for r in report.pareto(theirs) if r["kept"] <= MAX_KEPT]}
    return out


def _picked(cells: dict[str, Any]) -> set[tuple[str, str]]:
    rows = [*cells["levels"].values(), *cells["targets"].values(), *cells["front"]]
    return {(row["method"], row["knobs"]) for row in rows if row}


def _subset(grid: grids.Grid, wanted: set[tuple[str, str]], what: str) -> grids.Grid:
    """The grid entries named by ``wanted`` (method, knobs); one no grid has any more fails."""
    index = {(family, grids.knob_string(options)): (family, options) for family, options in grid}
    missing = sorted(wanted - index.keys())
    if missing:
        raise RuntimeError(f"{what}: configurations no longer in the grids (re-run bench_frontier.py): "
                           f"{missing}")
    return [index[key] for key in sorted(wanted)]


def run_fronts(name: str, picks: dict[str, dict], args: argparse.Namespace) -> list[dict]:
    """Rows (library, method, knobs, kept, psnr per held-out seed) of every library's front."""
    samples = frontier.samples_for(name, args)
    model = common.build_model(name, samples, args.steps)
    # a front's configurations can come from any sweep: full, lean or quick
    every_sweep = lambda make: make(name) + make(name, lean=True) + make(name, quick=True)  # noqa: E731
    methods, peer_grid = [], None
    if OURS in picks:
        grid = _subset(every_sweep(grids.ours_grid), _picked(picks[OURS]), "ours")
        methods += frontier.ours_methods(model, grid)
    if frontier.LABELS["diffusers"] in picks:
        import frontier_diffusers

        grid = _subset(every_sweep(grids.diffusers_grid), _picked(picks[frontier.LABELS["diffusers"]]),
                       "diffusers")
        methods += frontier_diffusers.methods(model, grid, frontier.CALIBRATION_SEED, print)
    if frontier.LABELS["cache-dit"] in picks:
        peer_grid = _subset(every_sweep(grids.cachedit_grid), _picked(picks[frontier.LABELS["cache-dit"]]),
                            "cache-dit")
    print(f"{name}: {len(methods) + len(peer_grid or [])} configurations on seeds {args.seeds}", flush=True)
    with tempfile.TemporaryDirectory(prefix=f"holdout-{name}-") as tmp:
        reference, rows, _ = common.sweep(model, methods, args.seeds, args.uncached_every, strict=False)
        if peer_grid:
            worker = frontier.start_peers(model, samples, args, Path(tmp), configs=peer_grid)
            if worker is None:
                raise RuntimeError("cache-dit 1.5.3 is on the frontier but .venv-peers is missing "
                                   "(run scripts/setup_peers.sh)")
            rows += frontier.finish_peers(worker, Path(tmp), args.seeds, reference)[0]
    frontier.score(rows, reference, model.output_kind, with_lpips=False)
    for row in rows:
        row["model"] = name
    return rows


def _find(rows: list[dict], library: str, pick: dict | None) -> dict | None:
    if pick is None:
        return None
    return next((r for r in rows if r["library"] == library and r["method"] == pick["method"]
                 and r["knobs"] == pick["knobs"] and r["psnrs"]), None)


def _cell(seed0: dict | None, held: dict | None) -> str:
    if seed0 is None:
        return "-"
    if held is None:
        return f"{seed0['psnr']:.1f} / not run"
    return f"{seed0['psnr']:.1f} / {held['psnr']:.1f} (min {min(held['psnrs']):.1f}, kept {held['kept']:.3f})"


def _level_lines(picks: dict[str, dict], rows: list[dict], libs: list[str], seeds: str) -> list[str]:
    """Best PSNR at kept <= level: each seed-0 winner held out, and ours' margin seed by seed."""
    lines = [f"Best PSNR at kept <= level: the winner on {seeds} / the same configuration on "
             f"the held-out seeds (mean; worst seed; kept there).", "",
             "| kept <= | " + " | ".join(libs) + " | ours' margin over the best peer, mean / worst seed |",
             "|---|" + "---|" * (len(libs) + 1)]
    for level in report.KEPT_LEVELS:
        held = {lib: _find(rows, lib, picks[lib]["levels"][level]) for lib in libs}
        cells = [_cell(picks[lib]["levels"][level], held[lib]) for lib in libs]
        peers = [held[lib]["psnrs"] for lib in libs if lib != OURS and held[lib]]
        margin = "-"
        if held.get(OURS) and peers:
            per_seed = [mine - max(p[i] for p in peers) for i, mine in enumerate(held[OURS]["psnrs"])]
            margin = f"{np.mean(per_seed):+.1f} / {min(per_seed):+.1f}"
        lines.append(f"| {level:g} | " + " | ".join(cells) + f" | {margin} |")
    return lines


def _target_lines(name: str, picks: dict[str, dict], rows: list[dict], libs: list[str],
                  seeds: str) -> list[str]:
    """Least kept at each PSNR target among each library's front, held out, and ours' ratio."""
    lines = [f"Least kept at PSNR >= target: the pick on {seeds} / on the held-out seeds, "
             f"the least kept (held out) among the library's front on {seeds} whose held-out "
             f"mean reaches the target; then ours' held-out kept over the best peer's.", "",
             "| PSNR >= | " + " | ".join(libs) + " | ours / best peer, held out |",
             "|---|" + "---|" * (len(libs) + 1)]
    for target in report.PSNR_TARGETS[name]:
        cells, held_kept = [], {}
        for lib in libs:
            pick = picks[lib]["targets"][target]
            front = [r for r in (_find(rows, lib, p) for p in picks[lib]["front"]) if r]
            holds = report.least_kept_for(front, target)
            if holds is not None:
                held_kept[lib] = holds["kept"]
            cells.append(("-" if pick is None else f"{pick['kept']:.3f}") + " / "
                         + ("-" if holds is None else f"{holds['kept']:.3f} ({holds['psnr']:.1f} dB)"))
        peer_kept = [held_kept[lib] for lib in libs if lib != OURS and lib in held_kept]
        ratio = (f"{held_kept[OURS] / min(peer_kept):.2f}x" if OURS in held_kept and peer_kept else
                 "no peer reaches it" if OURS in held_kept else "-")
        lines.append(f"| {target:g} dB | " + " | ".join(cells) + f" | {ratio} |")
    return lines


def model_markdown(name: str, picks: dict[str, dict], rows: list[dict], frontier_seeds: str) -> list[str]:
    """Both tables of one model, and the front configurations that have no held-out row."""
    libs = [lib for lib in (OURS, *PEERS) if lib in picks]
    missing = [(lib, r["knobs"]) for lib in libs for r in picks[lib]["front"]
               if _find(rows, lib, r) is None]
    lines = ["", f"### {name}", "", *_level_lines(picks, rows, libs, frontier_seeds), "",
             *_target_lines(name, picks, rows, libs, frontier_seeds)]
    if missing:
        lines += ["", f"{len(missing)} configurations of the fronts have no held-out result (failed, or "
                  f"the front changed since this model was run here): "
                  + "; ".join(f"{lib} {knobs}" for lib, knobs in missing)]
    return lines


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", type=lambda t: frontier._csv_list(t, common.MODEL_NAMES, "--models"),
                        default=["reference", "deep-reference", "medium-flux"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3],
                        help="held-out seeds: none of the frontier's own")
    parser.add_argument("--frontier-seeds", type=int, nargs="+", default=[0],
                        help="the seeds frontier.csv was picked on (bench_frontier.py --seeds)")
    parser.add_argument("--samples", type=int, default=None,
                        help="images per call (default: the frontier's, 10 / 1 on medium FLUX)")
    parser.add_argument("--steps", type=int, default=28)
    parser.add_argument("--uncached-every", type=int, default=4)
    parser.add_argument("--peers-python", default=str(frontier.PEERS_PYTHON))
    parser.add_argument("--out", type=Path, default=frontier.DEFAULT_OUT)
    args = parser.parse_args(argv)
    for name in ("samples", "steps", "uncached_every"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    args.quick, args.lean = False, False  # what samples_for / start_peers read
    return args


def main(argv: list[str] | None = None) -> list[dict]:
    args = parse_args(argv)
    torch.set_num_threads(1)
    if set(args.seeds) & set(args.frontier_seeds):
        raise SystemExit(f"--seeds {args.seeds} overlaps the frontier's seeds {args.frontier_seeds}")
    rows = report.read_csv(args.out / "frontier.csv")
    lines = [f"# Frontier winners on held-out seeds {args.seeds}, "
             f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC (last run), torch "
             f"{torch.__version__} (1 thread); fronts and winners from bench_frontier.py on seeds "
             f"{args.frontier_seeds}; a model not run here keeps its rows of holdout.csv."]
    held = [r for r in _read_held(args.out / "holdout.csv", args.seeds) if r["model"] not in args.models]
    for name in args.models:
        held += run_fronts(name, picks_of(rows, name), args)
        _write(held, rows, lines, args)  # after every model, so that a partial run survives
    return [r for r in held if r["model"] in args.models]


def _read_held(path: Path, seeds: list[int]) -> list[dict]:
    """Rows of an earlier run on the same held-out seeds (other models are kept, as
    bench_frontier.py keeps them); none when the file is absent or has other seeds."""
    if not path.is_file():
        return []
    with open(path, newline="") as handle:
        reader = csv.DictReader(handle)
        columns = [f"psnr_seed{s}" for s in seeds]
        if [c for c in reader.fieldnames or [] if c.startswith("psnr_seed")] != columns:
            return []
        return [{**r, "kept": float(r["kept"]), "error": "", "psnrs": [float(r[c]) for c in columns],
                 "psnr": float(np.mean([float(r[c]) for c in columns]))}
                for r in reader if all(r.get(c) not in (None, "") for c in columns)]


def _write(held: list[dict], rows: list[dict], header: list[str], args: argparse.Namespace) -> None:
    args.out.mkdir(parents=True, exist_ok=True)
    with open(args.out / "holdout.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["model", "library", "method", "knobs", "kept", *[f"psnr_seed{s}" for s in args.seeds]])
        for r in held:
            writer.writerow([r["model"], r["library"], r["method"], r["knobs"], f"{r['kept']:.6g}",
                             *[f"{p:.6g}" for p in r["psnrs"]]])
    lines = list(header)
    for name in dict.fromkeys(r["model"] for r in held):
        lines += model_markdown(name, picks_of(rows, name), [r for r in held if r["model"] == name],
                                f"seeds {args.frontier_seeds}")
    (args.out / "holdout.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines), flush=True)


if __name__ == "__main__":
    main()
