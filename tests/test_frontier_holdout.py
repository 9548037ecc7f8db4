"""The held-out check of the frontier: which configurations it re-runs and how it reads them."""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import bench_frontier  # noqa: E402
import bench_frontier_holdout as holdout  # noqa: E402


def _row(library, kept, psnr, psnrs=None):
    row = {"model": "reference", "library": library, "method": "x", "knobs": f"{kept}",
           "kept": kept, "speedup": 1 / kept, "psnr": psnr, "lpips": 0.0, "error": ""}
    if psnrs is not None:
        row["psnrs"] = psnrs
    return row


def test_margins_are_per_seed_and_targets_use_the_held_out_front():
    frontier = [_row("ours", 0.3, 40.0), _row("ours", 0.5, 48.0), _row("ours", 0.6, 47.0),
                _row("diffusers", 0.3, 35.0), _row("diffusers", 0.5, 44.0), _row("diffusers", 0.9, 60.0)]
    picks = holdout.picks_of(frontier, "reference")
    assert [r["kept"] for r in picks["ours"]["front"]] == [0.3, 0.5]  # 0.6 is dominated
    assert [r["kept"] for r in picks["diffusers"]["front"]] == [0.3, 0.5]  # 0.9 is above MAX_KEPT
    assert holdout._picked(picks["ours"]) == {("x", "0.3"), ("x", "0.5")}
    held = [_row("ours", 0.3, 40.0, [39.0, 41.0]), _row("ours", 0.5, 48.0, [47.0, 49.0]),
            _row("diffusers", 0.3, 35.0, [36.0, 34.0]), _row("diffusers", 0.5, 44.5, [44.0, 45.0])]
    text = "\n".join(holdout.model_markdown("reference", picks, held, "seeds [0]"))
    # 0.3: margins 39 - 36 and 41 - 34
    assert "| 0.3 | 40.0 / 40.0 (min 39.0, kept 0.300) | 35.0 / 35.0 (min 34.0, kept 0.300) | +5.0 / +3.0 |" in text
    assert "| 0.5 | 48.0 / 48.0 (min 47.0, kept 0.500) | 44.0 / 44.5 (min 44.0, kept 0.500) | +3.5 / +3.0 |" in text
    assert "| 40 dB | 0.300 / 0.300 (40.0 dB) | 0.500 / 0.500 (44.5 dB) | 0.60x |" in text
    assert "| 45 dB | 0.500 / 0.500 (48.0 dB) | 0.900 / - | no peer reaches it |" in text


def test_a_configuration_that_left_the_grids_is_named():
    with pytest.raises(RuntimeError, match=r"ours: configurations no longer in the grids .*'gone'"):
        holdout._subset([("DBCache", {"kind": "fbcache", "threshold": 0.1})], {("DBCache", "gone")}, "ours")


def test_seeds_of_the_frontier_are_refused():
    with pytest.raises(SystemExit, match=r"--seeds \[0, 1\] overlaps the frontier's seeds \[0\]"):
        holdout.main(["--seeds", "0", "1", "--out", "/nonexistent"])


@pytest.mark.parametrize("flag", ["--samples", "--steps", "--uncached-every"])
def test_counts_below_one_are_refused_by_name(flag, capsys):
    with pytest.raises(SystemExit):
        holdout.parse_args([flag, "0"])
    assert f"{flag} must be >= 1, got 0" in capsys.readouterr().err


def test_quick_frontier_then_its_held_out_check(tmp_path):
    bench_frontier.main(["--quick", "--libraries", "ours,diffusers", "--out", str(tmp_path)])
    rows = holdout.main(["--models", "reference", "--seeds", "1", "--samples", "2", "--out", str(tmp_path)])
    fronts = holdout.picks_of(bench_frontier.report.read_csv(tmp_path / "frontier.csv"), "reference")
    assert {(r["library"], r["method"], r["knobs"]) for r in rows} == {
        (lib, method, knobs) for lib, cells in fronts.items() for method, knobs in holdout._picked(cells)}
    for row in rows:
        assert not row["error"], row
        assert 0.2 < row["kept"] < 1.0 and len(row["psnrs"]) == 1 and 20.0 < row["psnrs"][0] < 80.0, row
    with open(tmp_path / "holdout.csv", newline="") as handle:
        assert len(list(csv.DictReader(handle))) == len(rows)
    text = (tmp_path / "holdout.md").read_text()
    assert "held-out seeds [1]" in text and "| kept <= | ours | diffusers |" in text


def test_earlier_rows_are_kept_only_for_the_same_seeds_and_a_stale_front_is_named(tmp_path):
    frontier = [_row("ours", 0.3, 40.0), _row("ours", 0.5, 48.0), _row("diffusers", 0.3, 35.0)]
    held = [_row("ours", 0.3, 40.0, [39.0, 41.0]), _row("diffusers", 0.3, 35.0, [36.0, 34.0])]
    args = holdout.parse_args(["--seeds", "1", "2", "--out", str(tmp_path)])
    holdout._write(held, frontier, ["# header"], args)
    back = holdout._read_held(tmp_path / "holdout.csv", [1, 2])
    assert [(r["library"], r["kept"], r["psnrs"]) for r in back] == [("ours", 0.3, [39.0, 41.0]),
                                                                      ("diffusers", 0.3, [36.0, 34.0])]
    assert holdout._read_held(tmp_path / "holdout.csv", [1, 3]) == []
    text = (tmp_path / "holdout.md").read_text()
    assert text.startswith("# header\n") and "| 0.5 | 48.0 / not run | 35.0 / 35.0 (min 34.0, kept 0.300) | - |" in text
    assert "1 configurations of the fronts have no held-out result" in text and "ours 0.5" in text
