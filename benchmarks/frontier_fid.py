"""FID of each library's best frontier point near 2x on the reference model (issue 13, item 1).

    PYTHONPATH=src python benchmarks/frontier_fid.py [--kept 0.5] [--samples 1000]

For every library, the row of ``benchmarks/results/frontier/frontier.csv`` with the best PSNR among
those keeping at most ``--kept`` of the block executions (0.5: about 2x on block-dominated time)
is rebuilt from its library's grid by its knob string and run once on ``--samples`` images in one
call (classes cycling 0-9, seed 1234, as ``cache-dit-bench --fid``); FID is against the shipped
Fashion-MNIST test-set statistics, beside the uncached model's. cache-dit 1.5.3 runs in its own
environment through ``frontier_peers_worker.py`` (skipped without ``.venv-peers``). Writes
``benchmarks/results/frontier/fid.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import frontier_common as common  # noqa: E402
import frontier_grids as grids  # noqa: E402
import frontier_report as report  # noqa: E402

OUT = common.REPO / "benchmarks" / "results" / "frontier"
PEERS_PYTHON = common.REPO / ".venv-peers" / "bin" / "python"
SEED = 1234
CALIBRATION_SEED = 1000  # as bench_frontier.py: MagCache ratios from a seed never evaluated


def best_rows(csv_path: Path, kept: float) -> dict[str, dict]:
    rows = [r for r in report.read_csv(csv_path) if r["model"] == "reference" and not r["error"]]
    best: dict[str, dict] = {}
    for row in rows:
        if float(row["kept"]) <= kept and (
                row["library"] not in best or float(row["psnr"]) > float(best[row["library"]]["psnr"])):
            best[row["library"]] = row
    return best


def _spec(grid: grids.Grid, row: dict) -> dict:
    for family, spec in grid:
        if family == row["method"] and grids.knob_string(spec) == row["knobs"]:
            return spec
    raise LookupError(f"{row['library']} {row['method']} {row['knobs']!r} is not in today's grid")


def _fid_scorer():
    """FID against the test-set statistics, with one feature network for every call."""
    from cache_dit.metrics import FrechetInceptionDistance
    from cache_dit.reference.fid import fid_against_test_set

    network = FrechetInceptionDistance(progress=False)
    return lambda images: float(fid_against_test_set(images, network))


def run_in_process(model, row: dict) -> np.ndarray:
    import cache_dit

    if row["library"] == "ours":
        options = _spec(grids.ours_grid("reference"), row)
        cache_dit.enable_cache(model.pipe, **options)
        try:
            return model.generate(SEED)
        finally:
            cache_dit.disable_cache(model.pipe)
    import frontier_diffusers

    spec = _spec(grids.diffusers_grid("reference"), row)
    [method] = frontier_diffusers.methods(model, [(row["method"], spec)], CALIBRATION_SEED)
    method.enable()
    try:
        return model.generate(SEED)
    finally:
        method.disable()


def run_cachedit(row: dict, samples: int, workdir: Path) -> np.ndarray:
    spec = _spec(grids.cachedit_grid("reference"), row)
    job = {"model": "reference", "samples": samples, "steps": 28, "seeds": [SEED],
           "configs": [(row["method"], spec)], "out": str(workdir), "uncached_every": 4}
    (workdir / "job.json").write_text(json.dumps(job))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    script = Path(__file__).resolve().parent / "frontier_peers_worker.py"
    subprocess.run([str(PEERS_PYTHON), str(script), str(workdir / "job.json")], check=True,
                   cwd=common.REPO, env=env, stdout=subprocess.DEVNULL)
    return np.load(workdir / f"0_{SEED}.npy")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kept", type=float, default=0.5)
    parser.add_argument("--samples", type=int, default=1000)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    started = time.time()
    best = best_rows(OUT / "frontier.csv", args.kept)
    model = common.build_model("reference", args.samples, 28)
    fid_of = _fid_scorer()
    results = [("uncached", "-", 1.0, float("inf"), fid_of(model.generate(SEED)))]
    print(f"uncached FID {results[0][-1]:.2f}", flush=True)
    for library, row in sorted(best.items()):
        if library == "cache-dit 1.5.3":
            if not PEERS_PYTHON.is_file():
                print("cache-dit 1.5.3 skipped: no .venv-peers (scripts/setup_peers.sh)")
                continue
            with tempfile.TemporaryDirectory(prefix="frontier-fid-") as tmp:
                images = run_cachedit(row, args.samples, Path(tmp))
        else:
            images = run_in_process(model, row)
        fid = fid_of(images)
        results.append((library, f"{row['method']}: {row['knobs']}", float(row["kept"]),
                        float(row["psnr"]), fid))
        print(f"{library} {row['method']} {row['knobs']}: FID {fid:.2f}", flush=True)
    lines = [f"# FID of each library's best point at kept <= {args.kept:g} (reference model)", "",
             f"{time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC, {args.samples} images in one "
             f"call (classes cycling 0-9, seed {SEED}), FID against the Fashion-MNIST test-set "
             f"statistics; kept and PSNR are the frontier run's (10 images, seed 0).", "",
             "| library | configuration | kept | PSNR (dB) | FID |", "|---|---|---|---|---|"]
    lines += [f"| {lib} | {conf} | {kept:.3f} | {psnr:.2f} | {fid:.2f} |"
              for lib, conf, kept, psnr, fid in results]
    lines.append(f"\nWall time {time.time() - started:.0f} s.")
    (OUT / "fid.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
