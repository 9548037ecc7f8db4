"""Frame-wise video metrics, decoding with PyAV one frame at a time.

PyAV is imported when a video is read (see :mod:`.deps`), so image-only use never loads it.

Frames are compared in decode order and averaged over every frame of every
video pair, so a directory result is ``(mean over all frames, total frames)``.
"""

from __future__ import annotations

import os
import sys
from itertools import zip_longest
from pathlib import Path
from typing import Iterable, Iterator, Optional, Union

import numpy as np
from tqdm import tqdm

from .deps import require_pyav
from .image import IMAGE_METRICS, PairMetrics, Result
from .io import VIDEO_EXTS, is_dir_input, pair_files

PathLike = Union[str, os.PathLike]


def iter_frames(path: PathLike) -> Iterator[np.ndarray]:
    """Decoded frames of the first video stream as HxWx3 uint8 RGB arrays."""
    av = require_pyav()
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{p}: no such file")
    if p.is_dir():
        raise ValueError(f"{p}: is a directory, expected a video file")
    try:
        container = av.open(str(p))
    except (av.FFmpegError, OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"{p}: cannot read video ({exc.__class__.__name__})") from None
    with container:
        if not container.streams.video:
            raise ValueError(f"{p}: has no video stream")
        try:
            for frame in container.decode(video=0):
                yield frame.to_ndarray(format="rgb24")
        except av.FFmpegError as exc:
            raise ValueError(f"{p}: cannot decode video ({exc.__class__.__name__})") from None


def _add_video_pair(acc: PairMetrics, a: Path, b: Path, bar: tqdm) -> None:
    count = 0
    for fa, fb in zip_longest(iter_frames(a), iter_frames(b)):
        if fa is None or fb is None:
            longer, shorter = (a, b) if fb is None else (b, a)
            raise ValueError(f"{a} and {b}: different frame counts ({shorter} ends after {count} frames, {longer} has more)")
        if fa.shape != fb.shape:
            raise ValueError(
                f"{a} and {b}: frames have different sizes ({fa.shape[1]}x{fa.shape[0]} vs {fb.shape[1]}x{fb.shape[0]})"
            )
        acc.add(fa, fb)
        count += 1
        bar.update(1)
    if count == 0:
        raise ValueError(f"{a}: video has no frames")


def compute_video_metrics(
    a: PathLike,
    b: PathLike,
    metrics: Iterable[str] = IMAGE_METRICS,
    *,
    lpips_net: str = "alex",
    lpips_weights: Optional[PathLike] = None,
    batch_size: int = 8,
    device: Optional[str] = None,
    progress: Optional[bool] = None,
) -> dict[str, Result]:
    """Frame-wise metrics of two videos or two directories of videos paired by name."""
    require_pyav()  # before the LPIPS weights load and the pairs are listed
    acc = PairMetrics(tuple(metrics), lpips_net, lpips_weights, batch_size, device)
    pairs = pair_files(a, b, VIDEO_EXTS) if is_dir_input(a, b) else [(Path(a), Path(b))]
    show = sys.stderr.isatty() if progress is None else progress
    with tqdm(desc=f"{a} vs {b}", unit="frame", disable=not show, leave=False) as bar:
        for pa, pb in pairs:
            _add_video_pair(acc, pa, pb, bar)
    return acc.results()


def compute_video_psnr(a: PathLike, b: PathLike, *, progress: Optional[bool] = None) -> Result:
    """Mean frame PSNR (dB) of two videos or directories; ``(mean, n_frames)``."""
    return compute_video_metrics(a, b, ("psnr",), progress=progress)["psnr"]


def compute_video_ssim(a: PathLike, b: PathLike, *, progress: Optional[bool] = None) -> Result:
    """Mean frame SSIM of two videos or directories; ``(mean, n_frames)``."""
    return compute_video_metrics(a, b, ("ssim",), progress=progress)["ssim"]


def compute_video_mse(a: PathLike, b: PathLike, *, progress: Optional[bool] = None) -> Result:
    """Mean frame MSE (8-bit units) of two videos or directories; ``(mean, n_frames)``."""
    return compute_video_metrics(a, b, ("mse",), progress=progress)["mse"]


def compute_video_lpips(
    a: PathLike,
    b: PathLike,
    *,
    net: str = "alex",
    weights: Optional[PathLike] = None,
    batch_size: int = 8,
    device: Optional[str] = None,
    progress: Optional[bool] = None,
) -> Result:
    """Mean frame LPIPS of two videos or directories; ``(mean, n_frames)``."""
    res = compute_video_metrics(
        a, b, ("lpips",), lpips_net=net, lpips_weights=weights, batch_size=batch_size, device=device, progress=progress
    )
    return res["lpips"]
