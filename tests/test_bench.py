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
    ("F0B0", "Fn_compute_blocks must be >= 1"),
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
    code = main(["--steps", "6", "--samples", "2", "--repeats", "1", "--no-progress",
                 "--config", "F1B0_R0.3_W2", "--config", "F1B0_R0.3_W2_T1O1", "--out", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "| config" in printed and "F1B0_R0.3_W2_T1O1" in printed
    for name in ("table.csv", "table.json", "pareto.png", "grid.png"):
        assert (out / name).stat().st_size > 0
    table = json.loads((out / "table.json").read_text())
    rows = {row["config"]: row for row in table["rows"]}
    assert set(rows) == {"uncached", "F1B0_R0.3_W2", "F1B0_R0.3_W2_T1O1"}
    assert rows["uncached"]["transformer_calls"] == 12  # 6 steps x cond + uncond
    for name in ("F1B0_R0.3_W2", "F1B0_R0.3_W2_T1O1"):
        row = rows[name]
        assert row["transformer_calls"] == 12
        assert 0 < row["blocks_fraction"] <= 1
        # blocks kept follows from cached calls: 6 blocks, F1B0 skips 5 per cached call
        assert row["blocks_fraction"] == pytest.approx(1 - row["cached_steps"] * 5 / (12 * 6))


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
