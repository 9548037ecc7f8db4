"""cache-dit-bench end to end (tiny run) and its config parsing."""

from __future__ import annotations

import json

import pytest

from cache_dit.bench.cli import main
from cache_dit.bench.configs import load_configs, parse_config


def test_config_strings_parse_to_options_and_round_trip_tags():
    config = parse_config("F1B0_R0.12_T1O2")
    assert config.options == {
        "Fn_compute_blocks": 1, "Bn_compute_blocks": 0, "residual_diff_threshold": 0.12,
        "enable_taylorseer": True, "enable_encoder_taylorseer": True,
        "taylorseer_kwargs": {"n_derivatives": 2}}
    assert config.tag == "DBCache_F1B0_W8_MC-1_R0.12_T1E1O2"
    tag = "DBCache_F8B8_W4_MC10_R0.15_MCC2_Mfast_CFG1"
    assert parse_config(tag).tag == tag


@pytest.mark.parametrize("text,message", [
    ("F1B0_X3", "token 'X3' is not understood"),
    ("R0.1", "needs an F<n>B<m> token"),
    ("F0B0", "Fn_compute_blocks=0 leaves no probe to decide from"),
    ("F-1B0", "token 'F-1B0' is not understood"),
    ("", "must be non-empty"),
])
def test_broken_config_strings_name_the_problem(text, message):
    with pytest.raises(ValueError, match=message):
        parse_config(text)


def test_configs_from_yaml(tmp_path):
    path = tmp_path / "configs.yaml"
    path.write_text("- F1B0_R0.08\n- {Fn_compute_blocks: 2, residual_diff_threshold: 0.2}\n")
    configs = load_configs(str(path))
    assert [c.name for c in configs] == ["F1B0_R0.08", "DBCache_F2B0_W8_MC-1_R0.2"]


def test_short_bench_run_writes_table_and_files(tmp_path, capsys):
    out = tmp_path / "bench"
    configs = ["F1B0_R0.8_W1", "F1B0_R0.8_W1_T1O1"]  # thresholds that do cache on 6 steps
    code = main(["--steps", "6", "--samples", "2", "--repeats", "2", "--no-progress", "--no-lpips",
                 "--config", configs[0], "--config", configs[1], "--out", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "| config" in printed and "expected" in printed and configs[1] in printed
    for name in ("table.csv", "table.json", "pareto.png", "grid.png"):
        assert (out / name).stat().st_size > 0
    table = json.loads((out / "table.json").read_text())
    assert 0 < table["block_share"] < 1
    rows = {row["config"]: row for row in table["rows"]}
    assert set(rows) == {"uncached", *configs}
    assert rows["uncached"]["transformer_calls"] == 12  # 6 steps x cond + uncond
    assert len(rows["uncached"]["cpu_samples"]) == 2 * 2  # every config's uncached half
    for name in configs:
        row = rows[name]
        assert row["transformer_calls"] == 12
        assert row["cached_steps"] > 0
        # blocks kept follows from cached calls: 6 blocks, F1B0 skips 5 per cached call, and the
        # cache's own count agrees with the blocks whose linears really ran
        assert row["blocks_fraction"] == pytest.approx(1 - row["cached_steps"] * 5 / (12 * 6))
        assert row["blocks_fraction"] == pytest.approx(row["blocks_counted"])
        assert row["speedup_lo"] <= row["speedup"] <= row["speedup_hi"]
        assert row["expected"] == pytest.approx(
            1 / (1 - table["block_share"] * (1 - row["blocks_fraction"])))
        uncached = rows["uncached"]["cpu_samples"][2 * configs.index(name):][:2]  # its pairs
        assert row["overhead"] == pytest.approx(  # median of two = their mean
            sum(b / a - 1 / row["expected"] for a, b in zip(uncached, row["cpu_samples"])) / 2)
        assert row["flag"] == ("!" if abs(row["speedup"] - row["expected"])
                               > row["speedup_hi"] - row["speedup_lo"] else "")


def test_progress_ticks_once_per_pipeline_call():
    from cache_dit.bench.models import build_model
    from cache_dit.bench.runner import planned_calls, run_benchmark

    model = build_model("reference", steps=3, samples=1)
    calls, ticks = [0], []
    generate = model.generate

    def counted(*args, **kwargs):
        calls[0] += 1
        return generate(*args, **kwargs)

    model.generate = counted  # our own dataclass instance
    run_benchmark(model, [parse_config("F1B0_R0.8_W1")], repeats=2, with_lpips=False,
                  on_progress=ticks.append, warmup=1)
    assert len(ticks) == calls[0] == planned_calls(1, repeats=2, warmup=1)


def test_paired_ratios_expected_speedup_and_flag():
    from cache_dit.bench.timing import disagrees, expected_speedup, paired_ratios, ratio_stats

    ratios = paired_ratios([2.0, 4.0, 3.0], [1.0, 2.5, 1.0])
    assert ratios == [2.0, 1.6, 3.0]
    stats = ratio_stats(ratios)
    assert stats == {"median": 2.0, "lo": 1.6, "hi": 3.0}
    assert expected_speedup(0.8, 0.5) == pytest.approx(1 / 0.6)
    assert expected_speedup(0.0, 0.1) == 1.0
    assert not disagrees(stats, 3.3)  # 1.3 from the median, spread 1.4
    assert disagrees(stats, 3.5)
    assert disagrees({"median": 1.5, "lo": 1.5, "hi": 1.5}, 1.51)  # one repeat: no spread
    with pytest.raises(ValueError, match="equally many"):
        paired_ratios([1.0], [1.0, 2.0])
    with pytest.raises(ValueError, match="blocks_kept must be in"):
        expected_speedup(0.5, 1.2)


def test_bench_rejects_a_broken_config_with_a_clear_error(capsys):
    assert main(["--config", "F1B0_Q7", "--no-progress"]) == 2
    assert "token 'Q7' is not understood" in capsys.readouterr().err


def test_bench_fid_column_uses_the_shipped_test_set_statistics(tmp_path, capsys):
    out = tmp_path / "bench"
    code = main(["--steps", "4", "--samples", "2", "--repeats", "1", "--no-progress", "--no-lpips",
                 "--fid", "4", "--config", "F1B0_R0.3_W1", "--out", str(out)])
    assert code == 0
    rows = json.loads((out / "table.json").read_text())["rows"]
    assert all(row["fid"] > 0 for row in rows)
    assert "FID" in capsys.readouterr().out


def test_bench_budget_rows_keep_the_asked_compute(tmp_path, capsys):
    out = tmp_path / "bench"
    code = main(["--steps", "20", "--samples", "2", "--repeats", "1", "--no-progress", "--no-lpips",
                 "--config", "F1B0_R0.8_W1", "--budget", "0.5", "--out", str(out)])
    assert code == 0
    assert "F1B0_BUD0.5" in capsys.readouterr().out
    rows = {row["config"]: row for row in json.loads((out / "table.json").read_text())["rows"]}
    assert rows["F1B0_BUD0.5"]["cached_steps"] > 0
    assert abs(rows["F1B0_BUD0.5"]["blocks_fraction"] - 0.5) <= 0.03
