"""The frontier benchmark (benchmarks/bench_frontier.py): its counter, grids, report and a quick run.

Our side and diffusers' hooks always run; the cache-dit 1.5.3 side needs .venv-peers
(scripts/setup_peers.sh) and is skipped without it.
"""

from __future__ import annotations

import csv
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCH))

import bench_frontier  # noqa: E402
import frontier_common as common  # noqa: E402
import frontier_grids as grids  # noqa: E402
import frontier_report as report  # noqa: E402

import cache_dit  # noqa: E402
from cache_dit.options import CacheOptions  # noqa: E402


@pytest.fixture(scope="module")
def model():
    return common.build_model("reference", samples=2)


def test_counter_counts_what_our_cache_reports(model):
    outputs, kept, _ = common.timed_run(model, [0])
    assert kept == 1.0
    cache_dit.enable_cache(model.pipe, Fn_compute_blocks=1, warmup_steps=2, residual_diff_threshold=0.12)
    try:
        cached, kept, _ = common.timed_run(model, [0])
        saved = cache_dit.summary(model.pipe)[0].blocks_saved_fraction
    finally:
        cache_dit.disable_cache(model.pipe)
    assert saved > 0.1, "the configuration must cache something for this test to mean anything"
    assert kept == pytest.approx(1.0 - saved, abs=1e-12)
    assert not np.array_equal(cached[0], outputs[0])


class _Block(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(2, 2)

    def forward(self, x: torch.Tensor, stand_in: bool = False) -> torch.Tensor:
        return x if stand_in else self.linear(x)  # a cache answering through the block's __call__


class _Toy(torch.nn.Module):
    """Two lists of blocks; ``forward`` does not call the blocks in ``skip`` at all and has the
    blocks in ``stand_in`` answer without running their Linear."""

    def __init__(self) -> None:
        super().__init__()
        self.transformer_blocks = torch.nn.ModuleList(_Block() for _ in range(2))
        self.single_transformer_blocks = torch.nn.ModuleList(_Block() for _ in range(2))

    def forward(self, x: torch.Tensor, skip: tuple[int, ...] = (), stand_in: tuple[int, ...] = ()):
        for index, block in enumerate([*self.transformer_blocks, *self.single_transformer_blocks]):
            if index not in skip:
                x = block(x, stand_in=index in stand_in)
        return x


def test_counter_counts_blocks_skipped_with_or_without_being_called():
    toy = _Toy()
    with common.count_kept(toy, common.BLOCK_LISTS) as counted:
        toy(torch.ones(1, 2), stand_in=(1,))  # blocks 0, 2, 3 run
        toy(torch.ones(1, 2), skip=(2, 3))  # blocks 0, 1 run
    assert counted == {"executed": 5, "possible": 8, "calls": 2}


def test_every_grid_of_ours_is_valid_and_distinct():
    for name in ("reference", "medium-flux", "deep-reference"):
        grid = grids.ours_grid(name)
        for _, options in grid:
            CacheOptions.from_kwargs(options)
        knobs = [grids.knob_string(o) for _, o in grid]
        assert len(set(knobs)) == len(knobs), f"{name}: duplicate configurations"
        peer_knobs = [grids.knob_string(o) for _, o in grids.cachedit_grid(name)]
        assert len(set(peer_knobs)) == len(peer_knobs)


def test_bad_names_are_rejected_with_the_allowed_ones():
    with pytest.raises(ValueError, match="allowed: reference, medium-flux, deep-reference"):
        common.build_model("tiny", samples=1)
    with pytest.raises(ValueError, match="samples must be an int >= 1, got 0"):
        common.build_model("reference", samples=0)
    with pytest.raises(ValueError, match="no knob ranges for model 'tiny'"):
        grids.ours_grid("tiny")
    with pytest.raises(SystemExit):
        bench_frontier.parse_args(["--libraries", "ours,teacache"])


def _row(library, kept, psnr, lpips=0.0):
    return {"model": "m", "library": library, "method": "x", "knobs": f"{kept}", "kept": kept,
            "speedup": 1 / kept, "psnr": psnr, "lpips": lpips, "error": ""}


def test_report_reads_the_front():
    rows = [_row("a", 0.3, 30.0), _row("a", 0.5, 40.0), _row("a", 0.45, 35.0), _row("a", 0.6, 38.0),
            _row("b", 0.35, 42.0), {**_row("b", 0.2, math.nan), "error": "boom"}]
    a = [r for r in rows if r["library"] == "a"]
    assert report.best_psnr_at(a, 0.4)["psnr"] == 30.0
    assert report.best_psnr_at(a, 0.5)["psnr"] == 40.0
    assert report.best_psnr_at(a, 0.7)["psnr"] == 40.0  # 38 dB at 0.6 is dominated
    assert report.best_psnr_at(a, 0.2) is None
    assert report.least_kept_for(a, 36.0)["kept"] == 0.5
    assert report.least_kept_for(a, 41.0) is None
    assert [r["kept"] for r in report.pareto(a)] == [0.3, 0.45, 0.5]
    text = report.markdown(rows)
    assert "| a | 30.0 | 30.0 | 40.0 | 40.0 | 40.0 |" in text
    assert "| b | - | 42.0 | 42.0 | 42.0 | 42.0 |" in text
    assert "6 configurations, 1 failed; b 0.2: boom." in text


def test_quick_run_of_ours_and_diffusers(tmp_path):
    rows = bench_frontier.main(["--quick", "--libraries", "ours,diffusers", "--out", str(tmp_path)])
    with open(tmp_path / "frontier.csv", newline="") as handle:
        written = list(csv.DictReader(handle))
    assert len(written) == len(rows) == len(grids.ours_grid("reference", quick=True)) + len(
        grids.diffusers_grid("reference", quick=True))
    assert {r["library"] for r in rows} == {"ours", "diffusers"}
    for row in rows:
        assert not row["error"], row
        assert 0.2 < row["kept"] < 1.0, row  # each quick point caches something
        assert 20.0 < row["psnr"] < 80.0 and 0.0 <= row["lpips"] < 0.2, row
        assert row["speedup"] > 0
    text = (tmp_path / "frontier.md").read_text()
    assert "| best PSNR (dB) at kept <= | 0.3 | 0.4 | 0.5 | 0.6 | 0.7 |" in text
    assert "uncached runs in the main process drift by 0 across the sweep" in text
    assert (tmp_path / "frontier_reference.png").stat().st_size > 10_000


@pytest.mark.skipif(not bench_frontier.PEERS_PYTHON.is_file(),
                    reason=".venv-peers is absent (scripts/setup_peers.sh)")
def test_quick_run_of_cachedit_153(tmp_path):
    rows = bench_frontier.main(["--quick", "--libraries", "cache-dit", "--out", str(tmp_path)])
    assert {r["library"] for r in rows} == {"cache-dit 1.5.3"}
    for row in rows:
        assert not row["error"], row
        assert 0.2 < row["kept"] < 1.0 and 20.0 < row["psnr"] < 80.0, row
    # Same torch, diffusers and pipeline code in both venvs: uncached outputs are bit-identical.
    assert "its uncached output differs from ours by at most 0;" in (tmp_path / "frontier.md").read_text()


def test_deep_reference_runs_or_is_skipped_by_name(tmp_path):
    try:
        common.build_model("deep-reference", samples=1)
    except common.ModelUnavailable:
        rows = bench_frontier.main(["--quick", "--models", "deep-reference", "--libraries", "ours",
                                    "--out", str(tmp_path)])
        assert rows == []
        assert "- deep-reference: skipped (deep-reference: " in (tmp_path / "frontier.md").read_text()
    else:
        assert common.num_blocks(common.build_model("deep-reference", samples=1)) >= 16


def test_a_run_replaces_only_its_own_model_and_library_rows(tmp_path):
    rows = [{**_row("ours", 0.5, 40.0), "model": "reference"},
            {**_row("diffusers", 0.5, 41.0), "model": "reference"},
            {**_row("ours", 0.5, 80.0), "model": "medium-flux"}]
    report.write_csv(rows, tmp_path / "frontier.csv")
    (tmp_path / "frontier_notes.json").write_text(
        '{"reference|ours,diffusers": ["a"], "medium-flux|ours": ["b"]}')
    kept, notes = bench_frontier._previous(tmp_path, ["reference"], ["ours"])
    assert [(r["model"], r["library"], r["psnr"]) for r in kept] == [
        ("reference", "diffusers", 41.0), ("medium-flux", "ours", 80.0)]
    assert notes == {"medium-flux|ours": ["b"]}


def test_a_run_of_some_families_keeps_ours_other_rows(tmp_path):
    rows = [{**_row("ours", 0.5, 40.0), "model": "reference", "method": "probe-free (F0)"},
            {**_row("ours", 0.5, 42.0), "model": "reference", "method": grids.SEARCHED}]
    report.write_csv(rows, tmp_path / "frontier.csv")
    family_key = f"reference|ours families {grids.SEARCHED}"
    (tmp_path / "frontier_notes.json").write_text(json.dumps(
        {"reference|ours,diffusers": ["full"], family_key: ["family"], "medium-flux|ours": ["m"]}))
    kept, notes = bench_frontier._previous(tmp_path, ["reference"], ["ours"], [grids.SEARCHED])
    assert [r["method"] for r in kept] == ["probe-free (F0)"]
    assert notes == {"reference|ours,diffusers": ["full"], "medium-flux|ours": ["m"]}
    # a full run of ours replaces the family's rows and notes too
    kept, notes = bench_frontier._previous(tmp_path, ["reference"], ["ours"])
    assert kept == [] and notes == {"medium-flux|ours": ["m"]}
    assert bench_frontier.parse_args(["--libraries", "ours", "--families", grids.SEARCHED]).families == [
        grids.SEARCHED]
    with pytest.raises(SystemExit):
        bench_frontier.parse_args(["--libraries", "ours", "--families", "teacache"])
    with pytest.raises(SystemExit):  # families are ours': other libraries would be re-run whole
        bench_frontier.parse_args(["--families", grids.SEARCHED])


def test_searched_masks_join_the_grid_with_the_options_they_were_searched_with(tmp_path):
    base = {"Fn_compute_blocks": 0, "Bn_compute_blocks": 0, "calibrator": "foca"}
    (tmp_path / "reference.json").write_text(json.dumps(
        {"base": base, "levels": {"4": {"mask": "CC.C.C..", "damping": 0.9}, "2": {"mask": "C...C..."}}}))
    options = grids.ours_searched("reference", tmp_path)
    # a level from before the search tried damping has none
    assert options == [{**base, "warmup_steps": 0, "steps_computation_mask": [1, 0, 0, 0, 1, 0, 0, 0]},
                       {**base, "calibrator_damping": 0.9, "warmup_steps": 0,
                        "steps_computation_mask": [1, 1, 0, 1, 0, 1, 0, 0]}]
    assert grids.knob_string(options[0]) == "F0B0 W0 M10001000 foca"
    assert grids.knob_string(options[1]) == "F0B0 W0 M11010100 foca D0.9"
    assert grids.ours_searched("medium-flux", tmp_path) == []  # not searched yet: no rows


def test_the_step_search_optimises_the_calls_the_frontier_evaluates(model):
    import bench_step_search
    from cache_dit.calibrate import _Replay

    [searched] = _Replay(model.pipe, bench_step_search.search_calls(model, 5)).run()
    assert np.array_equal(np.clip(searched, 0.0, 1.0), model.generate(5))
    # the search scores a call exactly as the frontier scores that seed
    from cache_dit.bench.runner import quality
    darker = searched * 0.98
    assert bench_step_search.frontier_metric(model.output_kind)(searched, darker) == quality(
        model.generate(5), np.clip(darker, 0.0, 1.0), model.output_kind, with_lpips=False)["psnr"]
    assert grids.pattern_of([1, 0, 1, 1]) == "C.CC"
    assert grids.searched_options({"calibrator": "foca"}, "C.CC") == {
        "calibrator": "foca", "warmup_steps": 0, "steps_computation_mask": [1, 0, 1, 1]}


def test_budget_placement_ablation_changes_one_field_at_a_time(model):
    import dataclasses

    import bench_budget_placement as ablation

    placements = list(ablation.PLACEMENTS.values())
    assert placements[0] == ablation.BEFORE and placements[-1] == ablation.NOW
    for before, after in zip(placements, placements[1:]):
        changed = [f.name for f in dataclasses.fields(before)
                   if getattr(before, f.name) != getattr(after, f.name)]
        assert len(changed) == 1, changed
    # the swapped-in placement is the one that decides: the old one forces the last step
    reference, _, _ = common.timed_run(model, [0])
    row = ablation.measure(model, [0], reference, dict(ablation.BASE, compute_budget=0.5),
                           ablation.BEFORE)
    assert row["pattern"].endswith("C") and row["pattern"].startswith("CCCC")
    now = ablation.measure(model, [0], reference, dict(ablation.BASE, compute_budget=0.5))
    assert now["pattern"] != row["pattern"] and math.isfinite(now["psnr"])


def test_probe_free_spacing_sweep_lays_out_each_exponent(model):
    import bench_probe_free_spacing as spacing

    lines = spacing.sweep(model, [0], lambda line: None, (1.0, 2.0), (0.4,), [(4, 2, 5)])
    text = "\n".join(lines)
    # 11 of 28 steps: even from step 0 (never step 1), or crowded into the first steps
    assert "| 1 | 0.4 | `C..C.C..C.C..C..C.C..C.C..C.` |" in text
    assert "| 2 | 0.4 | `CCCCC.C..C...C...C...C....C.` |" in text
    assert "| diffusers | " in text and "interval 4, order 2, from 5, 0.393" in text
