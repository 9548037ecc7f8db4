"""cache-dit-metrics-cli: the spec's invocations, JSON output and one-line errors."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cache_dit.metrics import compute_psnr, compute_video_psnr
from cache_dit.metrics.cli import main

torch.set_num_threads(1)



@pytest.fixture(scope="module")
def dirs(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("imgs")
    a, b = root / "true_dir", root / "test_dir"
    a.mkdir(), b.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        small = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
        x = np.array(Image.fromarray(small).resize((64, 64), Image.BICUBIC))
        y = np.clip(x + rng.normal(0, 10, x.shape), 0, 255).astype(np.uint8)
        Image.fromarray(x).save(a / f"{i}.png")
        Image.fromarray(y).save(b / f"{i}.png")
    return a, b



def run_json(capsys, *argv: str) -> dict:
    assert main([*argv, "--json", "--no-progress"]) == 0
    captured = capsys.readouterr()
    assert captured.err == ""  # a clean run prints no warnings (e.g. sqrtm's "Matrix is singular")
    return json.loads(captured.out)


def test_console_script_help():
    exe = Path(sys.executable).with_name("cache-dit-metrics-cli")
    assert exe.exists(), "console script not installed: run scripts/setup.sh"
    out = subprocess.run([str(exe), "-h"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0
    for word in ("all", "psnr", "ssim", "mse", "lpips", "fid", "-i1 true_dir -i2 test_dir", "-v1 true.mp4"):
        assert word in out.stdout


def test_all_on_image_pair_and_dirs(dirs, capsys):
    a, b = dirs
    pair = run_json(capsys, "all", "-i1", str(a / "0.png"), "-i2", str(b / "0.png"))
    assert set(pair["metrics"]) == {"psnr", "ssim", "mse", "lpips"}  # no FID for a single pair
    assert pair["metrics"]["psnr"]["value"] == pytest.approx(compute_psnr(a / "0.png", b / "0.png")[0])
    res = run_json(capsys, "all", "-i1", str(a), "-i2", str(b))
    assert res["kind"] == "image"
    assert {k: v["n"] for k, v in res["metrics"].items()} == {"psnr": 3, "ssim": 3, "mse": 3, "lpips": 3, "fid": 3}
    assert res["metrics"]["psnr"]["value"] == pytest.approx(compute_psnr(a, b)[0])
    assert res["metrics"]["fid"]["value"] > 0


def test_single_metric_commands_and_table(dirs, capsys):
    a, b = dirs
    res = run_json(capsys, "psnr", "-i1", str(a), "-i2", str(b))
    assert list(res["metrics"]) == ["psnr"]
    res = run_json(capsys, "fid", "-i1", str(a), "-i2", str(a))
    assert list(res["metrics"]) == ["fid"]
    assert res["metrics"]["fid"]["value"] == pytest.approx(0.0, abs=1e-6)
    assert main(["ssim", "-i1", str(a), "-i2", str(b), "--no-progress"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[1].split() == ["metric", "value", "images"]
    assert table[2].split()[0] == "SSIM" and table[2].split()[2] == "3"
    assert main(["psnr", "-i1", str(a / "0.png"), "-i2", str(a / "0.png")]) == 0
    assert capsys.readouterr().out.splitlines()[2].split()[:2] == ["PSNR", "inf"]


def test_video_file_and_dir(carphone, tmp_path, capsys):
    pristine, distorted = carphone
    res = run_json(capsys, "psnr", "-v1", str(pristine), "-v2", str(distorted))
    assert res["kind"] == "video"
    assert res["metrics"]["psnr"]["n"] == 120
    assert res["metrics"]["psnr"]["value"] == pytest.approx(compute_video_psnr(pristine, distorted)[0])
    va, vb = tmp_path / "va", tmp_path / "vb"
    va.mkdir(), vb.mkdir()
    shutil.copy(pristine, va / "c.mp4"), shutil.copy(pristine, vb / "c.mp4")
    res = run_json(capsys, "mse", "-v1", str(va), "-v2", str(vb))
    assert res["metrics"]["mse"] == {"value": 0.0, "n": 120}
    res = run_json(capsys, "psnr", "-v1", str(va), "-v2", str(vb))
    assert res["metrics"]["psnr"]["value"] == "inf" and math.isinf(float(res["metrics"]["psnr"]["value"]))


@pytest.mark.parametrize(
    "argv,needle",
    [
        (["psnr", "-i1", "{a}/missing.png", "-i2", "{b}/0.png"], "missing.png: no such file"),
        (["psnr", "-i1", "{a}", "-i2", "{empty}"], "empty: directory has no files"),
        (["psnr", "-i1", "{a}", "-i2", "{other}"], "no file names in common"),
        (["psnr", "-i1", "{a}/0.png", "-i2", "{other}/big.png"], "different sizes (64x64 vs 80x64)"),
        (["psnr", "-i1", "{a}/0.png", "-i2", "{other}/broken.png"], "broken.png: cannot read image"),
        (["fid", "-i1", "{a}/0.png", "-i2", "{b}/0.png"], "FID needs two image directories"),
        (["fid", "-v1", "{a}", "-v2", "{b}"], "FID compares image sets"),
        (["lpips", "-i1", "{a}", "-i2", "{b}", "--lpips-weights", "{a}/none.ckpt"], "none.ckpt: LPIPS-alex weights file not found"),
    ],
)
def test_errors_are_one_line_and_nonzero(dirs, tmp_path, capsys, argv, needle):
    a, b = dirs
    empty, other = tmp_path / "empty", tmp_path / "other"
    empty.mkdir(), other.mkdir()
    Image.fromarray(np.zeros((64, 80, 3), np.uint8)).save(other / "big.png")
    (other / "broken.png").write_bytes(b"\x89PNG broken")
    fmt = {"a": a, "b": b, "empty": empty, "other": other}
    assert main([s.format(**fmt) for s in argv]) == 1
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("cache-dit-metrics-cli: error: ")
    assert needle in lines[0]
    assert captured.out == ""


def test_usage_errors_exit_nonzero(dirs):
    a, b = dirs
    for argv in (["psnr"], ["psnr", "-i1", str(a)], ["psnr", "-i1", str(a), "-i2", str(b), "-v1", str(a), "-v2", str(b)], ["bogus"]):
        with pytest.raises(SystemExit) as exc:
            main(argv)
        assert exc.value.code == 2


def test_missing_weights_message_in_subprocess(dirs, tmp_path):
    """Installed-package path: a missing FID weights file is a one-line error, never a traceback."""
    a, b = dirs
    env = dict(os.environ, CACHE_DIT_FID_WEIGHTS=str(tmp_path / "no_inception.pt"))
    out = subprocess.run(
        [sys.executable, "-m", "cache_dit.metrics.cli", "fid", "-i1", str(a), "-i2", str(b)],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert out.returncode == 1
    assert "Traceback" not in out.stderr
    assert out.stderr.strip() == (
        f"cache-dit-metrics-cli: error: {tmp_path / 'no_inception.pt'}: FID Inception weights file not found "
        "(given by CACHE_DIT_FID_WEIGHTS)"
    )


def test_image_inputs_never_import_pyav(dirs):
    """PyAV is for videos only: a full image run (every metric, FID included) leaves it unimported."""
    a, b = dirs
    script = ("import sys\nfrom cache_dit.metrics.cli import main\n"
              "code = main(sys.argv[1:])\nprint('av' in sys.modules)\nsys.exit(code)")
    env = dict(os.environ, OMP_NUM_THREADS="1")  # as in-process (conftest): 2.5x faster on a busy 2-core box
    out = subprocess.run([sys.executable, "-c", script, "all", "-i1", str(a), "-i2", str(b), "--json", "--no-progress"],
                         capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    *report, av_imported = out.stdout.strip().splitlines()
    assert set(json.loads("\n".join(report))["metrics"]) == {"psnr", "ssim", "mse", "lpips", "fid"}
    assert av_imported == "False"


def test_video_inputs_without_pyav_are_a_one_line_error(tmp_path):
    a, b = tmp_path / "a.mp4", tmp_path / "b.mp4"
    a.write_bytes(b"not decoded: PyAV is missing"), b.write_bytes(b"not decoded: PyAV is missing")
    script = ("import sys\nsys.modules['av'] = None  # what an environment without PyAV sees\n"
              "from cache_dit.metrics.cli import main\nsys.exit(main(sys.argv[1:]))")
    out = subprocess.run([sys.executable, "-c", script, "psnr", "-v1", str(a), "-v2", str(b)],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 1
    assert out.stdout == "" and "Traceback" not in out.stderr
    (line,) = out.stderr.strip().splitlines()
    assert line.startswith("cache-dit-metrics-cli: error: video inputs need PyAV")
    assert "pip install av" in line
