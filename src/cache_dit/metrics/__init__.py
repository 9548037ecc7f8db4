"""Quality metrics for comparing cached against uncached generations.

Image functions take two image files, two directories (paired by file
name), numpy arrays or PIL images and return ``(mean, n)``; video functions
take two videos or two directories of videos and return ``(mean, n_frames)``.
No weights are ever downloaded; see :mod:`.weights`.

Names are imported on first use so that ``cache-dit-metrics-cli -h`` and
``import cache_dit.metrics`` do not pay for torch, scikit-image and PyAV.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "FrechetInceptionDistance": "fid",
    "fid_from_features": "fid",
    "frechet_distance": "fid",
    "compute_image_metrics": "image",
    "compute_lpips": "image",
    "compute_mse": "image",
    "compute_psnr": "image",
    "compute_ssim": "image",
    "compute_video_lpips": "video",
    "compute_video_metrics": "video",
    "compute_video_mse": "video",
    "compute_video_psnr": "video",
    "compute_video_ssim": "video",
    "WeightsNotFoundError": "weights",
}
__all__ = [
    "FID",
    "FrechetInceptionDistance",
    "WeightsNotFoundError",
    "compute_image_metrics",
    "compute_lpips",
    "compute_mse",
    "compute_psnr",
    "compute_ssim",
    "compute_video_lpips",
    "compute_video_metrics",
    "compute_video_mse",
    "compute_video_psnr",
    "compute_video_ssim",
    "fid_from_features",
    "frechet_distance",
]

if TYPE_CHECKING:
    from .fid import FrechetInceptionDistance, fid_from_features, frechet_distance
    from .fid import FrechetInceptionDistance as FID
    from .image import compute_image_metrics, compute_lpips, compute_mse, compute_psnr, compute_ssim
    from .video import compute_video_lpips, compute_video_metrics, compute_video_mse, compute_video_psnr, compute_video_ssim
    from .weights import WeightsNotFoundError


def __getattr__(name: str) -> Any:
    target = "FrechetInceptionDistance" if name == "FID" else name
    if target not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_EXPORTS[target]}", __name__), target)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
