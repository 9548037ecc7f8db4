"""FID of reference-model samples against the Fashion-MNIST test set, without the data set at run time.

The Inception statistics (mean and covariance of pool3 features over the 10,000 test images) ship next to the
weights. The covariance is symmetric, so only its upper triangle is stored, in float32: 8 MB instead of 32 MB.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Union

import numpy as np
from PIL import Image

from .pipeline import REFERENCE_WEIGHTS_DIR

if TYPE_CHECKING:
    from cache_dit.metrics import FrechetInceptionDistance

TEST_STATS_NAME = "fashion_mnist_test_fid_stats.npz"
TEST_STATS_PATH = REFERENCE_WEIGHTS_DIR / TEST_STATS_NAME

SampleImages = Union[np.ndarray, Sequence[Union[np.ndarray, Image.Image]]]


def save_test_set_statistics(mu: np.ndarray, sigma: np.ndarray, num_images: int, path: Path = TEST_STATS_PATH) -> None:
    """Store `mu` (float64) and the upper triangle of `sigma` (float32)."""
    rows, cols = np.triu_indices(sigma.shape[0])
    np.savez(
        path,
        mu=mu.astype(np.float64),
        sigma_upper=sigma[rows, cols].astype(np.float32),
        num_images=np.int64(num_images),
    )


def load_test_set_statistics(path: Path = TEST_STATS_PATH) -> tuple[np.ndarray, np.ndarray]:
    """`(mu, sigma)` of Inception pool3 features of the Fashion-MNIST test set, as float64."""
    with np.load(path) as stats:
        mu = stats["mu"].astype(np.float64)
        upper = stats["sigma_upper"].astype(np.float64)
    rows, cols = np.triu_indices(mu.shape[0])
    sigma = np.zeros((mu.shape[0], mu.shape[0]))
    sigma[rows, cols] = upper
    sigma[cols, rows] = upper
    return mu, sigma


def to_uint8_images(images: SampleImages) -> list[np.ndarray]:
    """Pipeline output (PIL list or float NHWC in [0, 1]) -> HxW(x C) uint8 arrays, rounded like `numpy_to_pil`."""
    converted = []
    for image in images:
        array = np.asarray(image)
        if array.dtype != np.uint8:
            array = (np.clip(array, 0.0, 1.0) * 255).round().astype(np.uint8)
        converted.append(array)
    return converted


def fid_against_test_set(
    images: SampleImages, fid: "FrechetInceptionDistance | None" = None, stats_path: Path = TEST_STATS_PATH
) -> float:
    """FID of generated images against the shipped test-set statistics (grey images are fed as RGB)."""
    from cache_dit.metrics import FrechetInceptionDistance
    from cache_dit.metrics.fid import fid_from_stats_and_features

    fid = fid if fid is not None else FrechetInceptionDistance()
    features = fid.features(to_uint8_images(images))
    reference_mu, reference_sigma = load_test_set_statistics(stats_path)
    return fid_from_stats_and_features(reference_mu, reference_sigma, features)
