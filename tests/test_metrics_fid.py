"""FID: the Inception input pipeline, Fréchet distance numerics, sanity of scores."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import scipy.linalg
import torch
import torch.nn.functional as F
from PIL import Image

from cache_dit.metrics import FrechetInceptionDistance, WeightsNotFoundError, fid_from_features, frechet_distance
from cache_dit.metrics.fid import feature_stats, fid_from_stats_and_features, resize_tf_bilinear

torch.set_num_threads(1)


def smooth_images(n: int, seed: int, size: int = 96) -> list[np.ndarray]:
    """Blurry colour blobs: random 6x6 images upsampled, so Inception sees structure, not pure noise."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, size=(n, 6, 6, 3), dtype=np.uint8)
    return [np.array(Image.fromarray(s).resize((size, size), Image.BICUBIC)) for s in small]


def add_noise(imgs: list[np.ndarray], sigma: float, seed: int = 1) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [np.clip(x + rng.normal(0, sigma, x.shape), 0, 255).round().astype(np.uint8) for x in imgs]


@pytest.fixture(scope="module")
def fid() -> FrechetInceptionDistance:
    return FrechetInceptionDistance(batch_size=8, device="cpu", progress=False)


@pytest.fixture(scope="module")
def base_features(fid) -> np.ndarray:
    return fid.features(smooth_images(10, seed=0))


def test_resize_matches_tf1_legacy_bilinear():
    x = torch.rand(2, 3, 37, 53, dtype=torch.float64)
    # TF1 ResizeBilinear(align_corners=False): source = dest * in/out, clamped at the border.
    # grid_sample with align_corners=True maps -1..1 onto pixel centres 0..in-1.
    ys = torch.arange(299, dtype=torch.float64) * 37 / 299
    xs = torch.arange(299, dtype=torch.float64) * 53 / 299
    gy, gx = torch.meshgrid(ys / 36 * 2 - 1, xs / 52 * 2 - 1, indexing="ij")
    grid = torch.stack([gx, gy], dim=-1)[None].expand(2, -1, -1, -1)
    want = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=True)
    assert torch.allclose(resize_tf_bilinear(x), want, atol=1e-9)
    # Exact factor 2 picks every other pixel; the target size is left alone.
    big = torch.rand(1, 3, 598, 598)
    assert torch.equal(resize_tf_bilinear(big), big[:, :, ::2, ::2])
    same = torch.rand(1, 3, 299, 299)
    assert torch.equal(resize_tf_bilinear(same), same)


def test_features_are_2048d_and_batch_independent(fid, base_features):
    assert base_features.shape == (10, 2048)
    assert base_features.min() >= 0  # pool3 of ReLU activations
    one = FrechetInceptionDistance(batch_size=1, device="cpu", progress=False).features(smooth_images(3, seed=0))
    np.testing.assert_allclose(one, base_features[:3], rtol=1e-4, atol=1e-4)


def test_fid_of_a_set_with_itself_is_zero(fid, tmp_path):
    a = tmp_path / "a"
    a.mkdir()
    for i, img in enumerate(smooth_images(5, seed=3)):
        Image.fromarray(img).save(a / f"{i}.png")
    value, n = fid.compute_fid(a, a)
    assert n == 5
    assert value == pytest.approx(0.0, abs=1e-6)


def test_fid_grows_with_noise(fid, base_features):
    clean = smooth_images(10, seed=0)
    scores = [fid_from_features(base_features, fid.features(add_noise(clean, s))) for s in (4, 16, 48)]
    assert 0 < scores[0] < scores[1] < scores[2], scores


def test_trace_term_matches_independent_eigenvalue_computation(fid, base_features):
    other = fid.features(smooth_images(8, seed=5))
    ours = fid_from_features(base_features, other)
    # Independent: tr sqrt(S1 S2) = sum of square roots of the eigenvalues of S1 S2 (real, >= 0).
    # Both covariances live in the span of the centred features, so restricting them to an
    # orthonormal basis Q of that span keeps every non-zero eigenvalue and turns a 2048^2
    # eigenproblem (a minute on 2 busy cores) into an 18^2 one.
    mu1, s1 = feature_stats(base_features)
    mu2, s2 = feature_stats(other)
    q, _ = np.linalg.qr(np.concatenate([base_features - mu1, other - mu2]).T)
    eig = scipy.linalg.eigvals((q.T @ s1 @ q) @ (q.T @ s2 @ q)).real
    independent = float((mu1 - mu2) @ (mu1 - mu2) + np.trace(s1) + np.trace(s2) - 2 * np.sqrt(np.clip(eig, 0, None)).sum())
    assert ours == pytest.approx(independent, rel=1e-6)


@pytest.mark.parametrize("n1,n2", [(12, 20), (150, 120)])
def test_gram_route_agrees_with_full_sqrtm(n1, n2):
    rng = np.random.default_rng(n1)
    f1 = rng.normal(size=(n1, 64)) @ rng.normal(size=(64, 64))
    f2 = rng.normal(0.3, 1.0, size=(n2, 64)) @ rng.normal(size=(64, 64))
    full = frechet_distance(*feature_stats(f1), *feature_stats(f2))  # singular covariances when n < 64
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the Gram matrix is singular too (rank n - 1), and that is no warning
        ours = fid_from_features(f1, f2)
    assert ours == pytest.approx(full, rel=1e-5)


@pytest.mark.filterwarnings("ignore::scipy.linalg.LinAlgWarning")  # the full route's singular S1 S2
@pytest.mark.parametrize("n", [2, 8, 63])
def test_stats_against_few_samples_matches_full_sqrtm(n):
    """The bench's route (shipped reference statistics vs a few samples) uses an n x n matrix."""
    rng = np.random.default_rng(n)
    mu, sigma = feature_stats(rng.normal(size=(500, 64)) @ rng.normal(size=(64, 64)))  # full rank
    samples = rng.normal(0.3, 1.0, size=(n, 64)) @ rng.normal(size=(64, 64))
    full = frechet_distance(mu, sigma, *feature_stats(samples))
    assert full > 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ours = fid_from_stats_and_features(mu, sigma, samples)
    assert ours == pytest.approx(full, rel=1e-6)


def test_stats_against_many_samples_is_the_full_formula_and_shapes_are_checked():
    rng = np.random.default_rng(0)
    mu, sigma = feature_stats(rng.normal(size=(100, 16)))
    samples = rng.normal(size=(16, 16))  # n == dim: no low-rank shortcut
    assert fid_from_stats_and_features(mu, sigma, samples) == frechet_distance(mu, sigma, *feature_stats(samples))
    with pytest.raises(ValueError, match=r"features \(N, D\), got \(16,\), \(16, 16\), \(4, 15\)"):
        fid_from_stats_and_features(mu, sigma, samples[:4, :15])
    with pytest.raises(ValueError, match="at least 2 images per set, got 1"):
        fid_from_stats_and_features(mu, sigma, samples[:1])


def test_two_images_per_set_match_the_closed_form_without_warnings():
    """n = 2: S = d d^T / 2 (d the difference of the two rows), so tr sqrt(S1 S2) = |d1 . d2| / 2.

    Their Gram matrix is exactly singular, which scipy's sqrtm reported as a
    "Matrix is singular" warning on every such call (the CLI printed it)."""
    rng = np.random.default_rng(0)
    for _ in range(6):
        f1, f2 = (rng.integers(0, 3, size=(2, 16)).astype(np.float64) * 2 for _ in range(2))
        d1, d2 = f1[1] - f1[0], f2[1] - f2[0]
        mean_gap = f1.mean(axis=0) - f2.mean(axis=0)
        closed = mean_gap @ mean_gap + d1 @ d1 / 2 + d2 @ d2 / 2 - abs(d1 @ d2)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert fid_from_features(f1, f2) == pytest.approx(closed, rel=1e-12)


def test_frechet_distance_closed_form():
    d = 16
    mu1, mu2 = np.zeros(d), np.full(d, 0.5)
    # ||mu1-mu2||^2 + tr(I + 4I - 2*sqrt(4I)) = d/4 + d
    assert frechet_distance(mu1, np.eye(d), mu2, 4 * np.eye(d)) == pytest.approx(d / 4 + d, rel=1e-12)
    with pytest.raises(ValueError, match="mismatched shapes"):
        frechet_distance(mu1, np.eye(d), mu2[:3], np.eye(3))


def test_fid_errors(fid, tmp_path, monkeypatch):
    img = tmp_path / "x.png"
    Image.fromarray(smooth_images(1, seed=9)[0]).save(img)
    with pytest.raises(ValueError, match="x.png: FID compares image sets"):
        fid.compute_fid(img, img)
    with pytest.raises(ValueError, match="at least 2 images"):
        fid.compute_fid([smooth_images(1, seed=9)[0]], smooth_images(3, seed=9))
    with pytest.raises(FileNotFoundError, match="nowhere: no such directory"):
        fid.compute_fid(tmp_path / "nowhere", tmp_path)
    monkeypatch.setenv("CACHE_DIT_FID_WEIGHTS", str(tmp_path / "inception.pt"))
    with pytest.raises(WeightsNotFoundError, match=r"inception.pt: FID Inception weights file not found \(given by CACHE_DIT_FID_WEIGHTS\)"):
        FrechetInceptionDistance()
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"garbage")
    with pytest.raises(ValueError, match="bad.pt: cannot load FID Inception TorchScript"):
        FrechetInceptionDistance(bad, device="cpu").features(smooth_images(2, seed=1))
