"""Side-by-side speed/quality frontier: this project vs cache-dit 1.5.3 vs diffusers' own caches.

    scripts/setup_peers.sh        # once: .venv-peers with cache-dit 1.5.3 (its package name clashes)
    PYTHONPATH=src .venv/bin/python benchmarks/bench_frontier.py [--models reference,medium-flux]
        [--libraries ours,cache-dit,diffusers] [--samples 10] [--seeds 0] [--quick] [--out DIR]

Every library runs the same models with the same seeds. x = fraction of block executions kept,
counted from real executions by one counter for all libraries (frontier_common.count_kept), with
the process-CPU-time speedup beside it (one thread, uncached runs interleaved); y = PSNR and LPIPS
against the uncached output of the same seed (decoded images on the reference models, the latent
displacement on medium FLUX). cache-dit 1.5.3 runs in a subprocess of .venv-peers
(frontier_peers_worker.py) and hands its outputs back as .npy files. Each library is swept over its
own knobs (frontier_grids.py); add a method of ours as option dicts there. Writes frontier.csv,
frontier.md and frontier_<model>.png to --out (default benchmarks/results/frontier/).
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import frontier_common as common  # noqa: E402
import frontier_grids as grids  # noqa: E402
import frontier_report as report  # noqa: E402

LIBRARIES = ("ours", "cache-dit", "diffusers")
FAMILIES = (*grids.OURS_FAMILIES, grids.SEARCHED)
LABELS = {"ours": "ours", "cache-dit": "cache-dit 1.5.3", "diffusers": "diffusers"}  # CSV names
DEFAULT_OUT = common.REPO / "benchmarks" / "results" / "frontier"
PEERS_PYTHON = common.REPO / ".venv-peers" / "bin" / "python"
CALIBRATION_SEED = 1000  # MagCache ratios come from this seed; it is never evaluated


def _csv_list(text: str, allowed: tuple[str, ...], what: str) -> list[str]:
    items = [item.strip() for item in text.split(",") if item.strip()]
    bad = [item for item in items if item not in allowed]
    if bad or not items:
        raise argparse.ArgumentTypeError(f"{what}: {bad or text!r} not allowed; choose from "
                                         f"{', '.join(allowed)}")
    return items


def ours_methods(model: Any, grid: grids.Grid) -> list[common.Method]:
    import cache_dit

    def make(family: str, options: dict) -> common.Method:
        cache_dit.CacheOptions.from_kwargs(options)  # a bad option dict fails before any run
        return common.Method("ours", family, grids.knob_string(options),
                             lambda: cache_dit.enable_cache(model.pipe, **options),
                             lambda: cache_dit.disable_cache(model.pipe))

    return [make(family, options) for family, options in grid]


def start_peers(model: Any, samples: int, args: argparse.Namespace, workdir: Path,
                configs: grids.Grid | None = None) -> subprocess.Popen | None:
    """Start the cache-dit 1.5.3 worker on ``configs`` (default: ``model``'s grid); None (with a
    note) without .venv-peers."""
    python = Path(args.peers_python)
    if not python.is_file():
        print(f"  cache-dit 1.5.3 skipped: {python} is missing (run scripts/setup_peers.sh)")
        return None
    if configs is None:
        configs = grids.cachedit_grid(model.name, args.quick, args.lean)
    job = {"model": model.name, "samples": samples, "steps": model.steps, "seeds": args.seeds,
           "configs": configs, "out": str(workdir), "uncached_every": args.uncached_every}
    (workdir / "job.json").write_text(json.dumps(job))
    log = open(workdir / "worker.log", "w")
    script = Path(__file__).resolve().parent / "frontier_peers_worker.py"
    # Without our src/ on its path: there `import cache_dit` must find the PyPI release.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.Popen([str(python), str(script), str(workdir / "job.json")], stdout=log,
                            stderr=subprocess.STDOUT, cwd=common.REPO, env=env)


def finish_peers(process: subprocess.Popen, workdir: Path, seeds: list[int],
                 reference: list[np.ndarray]) -> tuple[list[dict], str]:
    """Rows of the worker (outputs loaded back) and a note on its uncached outputs vs ours."""
    if process.wait() != 0:
        tail = (workdir / "worker.log").read_text()[-3000:]
        raise RuntimeError(f"cache-dit 1.5.3 worker failed (exit {process.returncode}):\n{tail}")
    result = json.loads((workdir / "results.json").read_text())
    gap = max(float(np.abs(np.load(workdir / f"uncached_{seed}.npy") - ref).max())
              for seed, ref in zip(seeds, reference))
    rows = result["rows"]
    for index, row in enumerate(rows):
        files = [workdir / f"{index}_{seed}.npy" for seed in seeds]
        row["outputs"] = [np.load(f) for f in files] if all(f.is_file() for f in files) else None
    versions = ", ".join(f"{k} {v}" for k, v in result["versions"].items())
    note = (f"cache-dit 1.5.3 worker ({versions}): its uncached output differs from ours by at most "
            f"{gap:g}; its later uncached runs drift by {result['uncached_drift']:g}")
    return rows, note


def score(rows: list[dict], reference: list[np.ndarray], kind: str, with_lpips: bool | None = None) -> None:
    """PSNR / LPIPS of every row's outputs against the uncached ones: per seed (``psnrs``) and
    averaged over seeds. LPIPS by default on images only."""
    from cache_dit.bench.runner import quality

    with_lpips = kind == "images" if with_lpips is None else with_lpips
    for row in rows:
        outputs = row.pop("outputs", None)
        if not outputs:
            row["psnr"] = row["lpips"] = math.nan
            row["psnrs"] = []
            continue
        scores = [quality(ref, out, kind, with_lpips=with_lpips) for ref, out in zip(reference, outputs)]
        row["psnrs"] = [s["psnr"] for s in scores]
        row["psnr"] = float(np.mean(row["psnrs"]))
        row["lpips"] = float(np.mean([s["lpips"] for s in scores]))


def samples_for(name: str, args: argparse.Namespace) -> int:
    if args.samples is not None:
        return args.samples
    return 2 if args.quick else (1 if name == "medium-flux" else 10)


def run_model(name: str, args: argparse.Namespace, log: Callable[[str], None]) -> tuple[list[dict], list[str]]:
    """All rows (scored) and notes for one model."""
    samples = samples_for(name, args)
    model = common.build_model(name, samples, args.steps)
    log(f"{name}: {common.num_blocks(model)} blocks, {model.steps} steps, {samples} samples per "
        f"call, seeds {args.seeds}")
    with tempfile.TemporaryDirectory(prefix=f"frontier-{name}-") as tmp:
        peers = None
        if "cache-dit" in args.libraries and args.parallel:
            peers = start_peers(model, samples, args, Path(tmp))
        methods = []
        if "ours" in args.libraries:
            grid = grids.ours_grid(name, args.quick, args.lean)
            if args.families:
                grid = [(family, options) for family, options in grid if family in args.families]
            methods += ours_methods(model, grid)
        if "diffusers" in args.libraries:
            import frontier_diffusers

            methods += frontier_diffusers.methods(model, grids.diffusers_grid(name, args.quick, args.lean),
                                                  CALIBRATION_SEED, log)
        reference, rows, drift = common.sweep(model, methods, args.seeds, args.uncached_every,
                                              log, strict=False)
        notes = [f"{name}: {samples} samples per call, seeds {args.seeds}"
                 f"{', lean grid' if args.lean else ''}"
                 f"{'; ours families: ' + ', '.join(args.families) if args.families else ''}; "
                 f"uncached runs in the main process drift "
                 f"by {drift:g} across the sweep"]
        if "cache-dit" in args.libraries and not args.parallel:
            peers = start_peers(model, samples, args, Path(tmp))
        if peers is not None:
            log(f"  waiting for the cache-dit 1.5.3 worker (log: {tmp}/worker.log)")
            peer_rows, note = finish_peers(peers, Path(tmp), args.seeds, reference)
            rows += peer_rows
            notes.append(f"{name}: {note}")
    score(rows, reference, model.output_kind)
    for row in rows:
        row["model"] = name
    return rows, notes


def header(args: argparse.Namespace) -> str:
    import diffusers

    return (f"Frontier benchmark, {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, "
            f"{platform.processor() or platform.machine()}, torch {torch.__version__} (1 thread), "
            f"diffusers {diffusers.__version__}; {args.steps} steps. kept = block executions "
            f"that ran / all; speedup = uncached / cached process CPU time; samples and grids per "
            f"model in the notes below.")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", type=lambda t: _csv_list(t, common.MODEL_NAMES, "--models"),
                        default=None, help="default reference,medium-flux (--quick: reference)")
    parser.add_argument("--libraries", type=lambda t: _csv_list(t, LIBRARIES, "--libraries"),
                        default=list(LIBRARIES))
    parser.add_argument("--samples", type=int, default=None,
                        help="images per call (default: 10 on the reference models, 1 on medium "
                             "FLUX, whose call costs ~17 CPU s; --quick: 2)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--steps", type=int, default=28)
    parser.add_argument("--quick", action="store_true", help="three points per library, 2 images")
    parser.add_argument("--lean", action="store_true",
                        help="~16 points per library (the knobs that made the front in full sweeps)")
    parser.add_argument("--families", type=lambda t: _csv_list(t, FAMILIES, "--families"), default=None,
                        help="run only these families of ours (the CSV keeps ours' other rows)")
    parser.add_argument("--uncached-every", type=int, default=4)
    parser.add_argument("--parallel", action="store_true",
                        help="run the cache-dit 1.5.3 worker alongside the main sweep (2 cores)")
    parser.add_argument("--peers-python", default=str(PEERS_PYTHON))
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--report-only", action="store_true",
                        help="run nothing: rebuild frontier.md and the PNGs from --out's CSV")
    args = parser.parse_args(argv)
    if args.families and args.libraries != ["ours"]:
        parser.error(f"--families picks families of ours: use it with --libraries ours, got "
                     f"--libraries {','.join(args.libraries)}")
    args.models = args.models or (["reference"] if args.quick else ["reference", "medium-flux"])
    for name in ("samples", "steps", "uncached_every"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    return args


def _notes_key(name: str, libraries: list[str], families: list[str] | None) -> str:
    """Notes are kept per model and run; a run of some of ours' families has its own key."""
    if families:
        return f"{name}|ours families {' + '.join(families)}"
    return f"{name}|{','.join(libraries)}"


def _replaced(key: str, models: list[str], libraries: list[str], families: list[str] | None) -> bool:
    """Whether this run replaces the notes under ``key``: a run of some families only its own."""
    model, _, run = key.partition("|")
    if model not in models:
        return False
    if families:
        return key == _notes_key(model, libraries, families)
    ran = {"ours"} if run.startswith("ours families ") else set(run.split(","))
    return bool(ran & set(libraries))


def _previous(out: Path, models: list[str], libraries: list[str],
              families: list[str] | None = None) -> tuple[list[dict], dict]:
    """Rows and notes of an earlier run into ``out`` that this run does not replace: rows of other
    models or other libraries (or of ours' other families, with ``families``), so that one
    library of one model can be (re)run on its own."""
    labels = {LABELS[lib] for lib in libraries}
    csv_path, notes_path = out / "frontier.csv", out / "frontier_notes.json"
    rows = report.read_csv(csv_path) if csv_path.is_file() else []
    rows = [r for r in rows if r["model"] not in models or r["library"] not in labels
            or (families and r["library"] == "ours" and r["method"] not in families)]
    notes = json.loads(notes_path.read_text()) if notes_path.is_file() else {}
    return rows, {key: n for key, n in notes.items() if not _replaced(key, models, libraries, families)}


def main(argv: list[str] | None = None) -> list[dict]:
    """Run the sweep; returns this invocation's rows (the files also hold earlier models' rows)."""
    args = parse_args(argv)
    torch.set_num_threads(1)
    started = time.time()
    log = lambda line: print(line, flush=True)  # noqa: E731
    kept_rows, notes = _previous(args.out, [] if args.report_only else args.models, args.libraries,
                                 args.families)
    rows: list[dict] = []
    if args.report_only:
        for name in dict.fromkeys(r["model"] for r in kept_rows):
            report.plot(kept_rows, name, args.out / f"frontier_{name}.png")
    for name in ([] if args.report_only else args.models):
        try:
            model_rows, notes[_notes_key(name, args.libraries, args.families)] = run_model(name, args, log)
        except common.ModelUnavailable as exc:
            log(f"{name}: skipped ({exc})")
            notes[_notes_key(name, args.libraries, args.families)] = [f"{name}: skipped ({exc})"]
            continue
        rows += model_rows
        # After every model, so that a partial run survives.
        report.write_csv(kept_rows + rows, args.out / "frontier.csv")
        report.plot(kept_rows + rows, name, args.out / f"frontier_{name}.png")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "frontier_notes.json").write_text(json.dumps(notes, indent=1))
    lines = [n for model_notes in notes.values() for n in model_notes]
    text = report.markdown(kept_rows + rows, "# " + header(args)) + "\n" + "\n".join(f"- {n}" for n in lines)
    last = ("rebuilt from frontier.csv (--report-only)" if args.report_only else
            f"wall time of the last invocation ({', '.join(args.models)}): {time.time() - started:.0f} s")
    (args.out / "frontier.md").write_text(text + f"\n- {last}\n")
    log(text)
    return rows


if __name__ == "__main__":
    main()
