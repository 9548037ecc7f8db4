"""Full-reference image metrics: PSNR, SSIM, MSE and LPIPS.

All metrics are computed on 8-bit RGB pixels (see :mod:`.io`): MSE is in
8-bit units and PSNR = 10 log10(255^2 / MSE) over all pixels and channels,
the convention of pyiqa's reference values. Identical images give inf PSNR.
SSIM follows Wang et al. 2004 (11x11 Gaussian window, sigma 1.5, population
statistics), averaged over the RGB channels.
"""

from __future__ import annotations

import math
import os
import sys
from typing import Iterable, Optional, Sequence, Union

import numpy as np
from skimage.metrics import structural_similarity
from tqdm import tqdm

from .io import IMAGE_EXTS, ImageLike, describe, is_dir_input, load_pair, pair_files
from .lpips import lpips_distance, lpips_weights_path

IMAGE_METRICS = ("psnr", "ssim", "mse", "lpips")
Result = tuple[float, int]


def mse(x: np.ndarray, y: np.ndarray) -> float:
    """Mean squared error of two uint8 images, in 8-bit units."""
    d = x.astype(np.float64) - y.astype(np.float64)
    return float(np.mean(d * d))


def psnr(x: np.ndarray, y: np.ndarray) -> float:
    """PSNR in dB with data range 255; inf for identical images."""
    err = mse(x, y)
    return math.inf if err == 0.0 else 10.0 * math.log10(255.0**2 / err)


def ssim(x: np.ndarray, y: np.ndarray) -> float:
    """SSIM of two uint8 RGB images (Gaussian-weighted, as in Wang et al.)."""
    if min(x.shape[:2]) < 11:
        raise ValueError(f"SSIM needs images of at least 11x11 pixels, got {x.shape[1]}x{x.shape[0]}")
    return float(
        structural_similarity(
            x, y, channel_axis=-1, data_range=255, gaussian_weights=True, sigma=1.5, use_sample_covariance=False
        )
    )


def _show_progress(progress: Optional[bool]) -> bool:
    return sys.stderr.isatty() if progress is None else progress


class PairMetrics:
    """Accumulates metrics over a stream of same-size image pairs.

    Shared by image directories and video frames so that both load each
    pair once and send LPIPS through the network in batches.
    """

    def __init__(
        self,
        metrics: Sequence[str],
        lpips_net: str = "alex",
        lpips_weights: Optional[Union[str, os.PathLike]] = None,
        batch_size: int = 8,
        device: Optional[str] = None,
    ) -> None:
        unknown = set(metrics) - set(IMAGE_METRICS)
        if unknown:
            raise ValueError(f"unknown metric(s) {sorted(unknown)}, choose from {IMAGE_METRICS}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.metrics = tuple(metrics)
        self.values: dict[str, list[float]] = {m: [] for m in self.metrics}
        self.lpips_net, self.lpips_weights, self.batch_size = lpips_net, lpips_weights, batch_size
        self.device = device
        self._pending: list[tuple[np.ndarray, np.ndarray]] = []
        if "lpips" in self.metrics:
            lpips_weights_path(lpips_net, lpips_weights)  # fail before the first image, not after

    def add(self, x: np.ndarray, y: np.ndarray) -> None:
        """Add one pair of equal-shape uint8 HxWx3 images."""
        if "psnr" in self.metrics:
            self.values["psnr"].append(psnr(x, y))
        if "mse" in self.metrics:
            self.values["mse"].append(mse(x, y))
        if "ssim" in self.metrics:
            self.values["ssim"].append(ssim(x, y))
        if "lpips" in self.metrics:
            if self._pending and self._pending[0][0].shape != x.shape:
                self._flush()  # a batch holds one image size only
            self._pending.append((x, y))
            if len(self._pending) >= self.batch_size:
                self._flush()

    def _flush(self) -> None:
        if self._pending:
            xs = np.stack([p[0] for p in self._pending])
            ys = np.stack([p[1] for p in self._pending])
            self.values["lpips"].extend(lpips_distance(xs, ys, self.lpips_net, self.lpips_weights, self.device).tolist())
            self._pending = []

    def results(self) -> dict[str, Result]:
        """``{metric: (mean over pairs, number of pairs)}``."""
        self._flush()
        return {m: (float(np.mean(v)) if v else math.nan, len(v)) for m, v in self.values.items()}


def image_pairs(a: Union[ImageLike, os.PathLike], b: Union[ImageLike, os.PathLike]) -> list[tuple[ImageLike, ImageLike]]:
    """The pairs to compare: one pair, or files of two directories matched by name."""
    if is_dir_input(a, b):
        return pair_files(a, b, IMAGE_EXTS)
    return [(a, b)]


def compute_image_metrics(
    a: ImageLike,
    b: ImageLike,
    metrics: Iterable[str] = IMAGE_METRICS,
    *,
    lpips_net: str = "alex",
    lpips_weights: Optional[Union[str, os.PathLike]] = None,
    batch_size: int = 8,
    device: Optional[str] = None,
    progress: Optional[bool] = None,
) -> dict[str, Result]:
    """Several metrics in one pass, loading every image once; ``{name: (mean, n)}``."""
    acc = PairMetrics(tuple(metrics), lpips_net, lpips_weights, batch_size, device)
    pairs = image_pairs(a, b)
    show = _show_progress(progress) and len(pairs) > 1
    for pa, pb in tqdm(pairs, desc=f"{describe(a)} vs {describe(b)}", unit="img", disable=not show, leave=False):
        acc.add(*load_pair(pa, pb))
    return acc.results()


def compute_psnr(a: ImageLike, b: ImageLike, *, progress: Optional[bool] = None) -> Result:
    """PSNR (dB) of two images or two directories paired by file name; ``(mean, n)``."""
    return compute_image_metrics(a, b, ("psnr",), progress=progress)["psnr"]


def compute_mse(a: ImageLike, b: ImageLike, *, progress: Optional[bool] = None) -> Result:
    """MSE in 8-bit units of two images or two directories; ``(mean, n)``."""
    return compute_image_metrics(a, b, ("mse",), progress=progress)["mse"]


def compute_ssim(a: ImageLike, b: ImageLike, *, progress: Optional[bool] = None) -> Result:
    """SSIM of two images or two directories; ``(mean, n)``."""
    return compute_image_metrics(a, b, ("ssim",), progress=progress)["ssim"]


def compute_lpips(
    a: ImageLike,
    b: ImageLike,
    *,
    net: str = "alex",
    weights: Optional[Union[str, os.PathLike]] = None,
    batch_size: int = 8,
    device: Optional[str] = None,
    progress: Optional[bool] = None,
) -> Result:
    """LPIPS v0.1 (``net`` "alex" or "vgg") of two images or two directories; ``(mean, n)``."""
    res = compute_image_metrics(
        a, b, ("lpips",), lpips_net=net, lpips_weights=weights, batch_size=batch_size, device=device, progress=progress
    )
    return res["lpips"]
