"""Loading images and pairing directories for the metrics.

Every metric works on one canonical form, an ``H x W x 3`` ``uint8`` RGB
array, so that PSNR, SSIM, MSE, LPIPS and FID all see exactly the same pixels
whatever the caller passed (a path, a PIL image or an array).
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Iterator, Sequence, Union

import numpy as np
from PIL import Image, UnidentifiedImageError

ImageLike = Union[str, os.PathLike, np.ndarray, Image.Image]

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")
VIDEO_EXTS = (".mp4", ".mov", ".mkv", ".avi", ".webm", ".gif")


def describe(src: object) -> str:
    """A short name for an input, used in error messages."""
    if isinstance(src, (str, os.PathLike)):
        return str(src)
    if isinstance(src, np.ndarray):
        return f"array{tuple(src.shape)}"
    if isinstance(src, Image.Image):
        return f"PIL image {src.size[0]}x{src.size[1]}"
    return type(src).__name__


def _array_to_uint8(arr: np.ndarray, name: str) -> np.ndarray:
    """Bring an array to HxWx3 uint8; floats must lie in [0, 1]."""
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    if arr.ndim != 3 or arr.shape[2] not in (1, 3, 4):
        raise ValueError(f"{name}: expected an HxW, HxWx1, HxWx3 or HxWx4 image array, got shape {arr.shape}")
    if arr.shape[2] == 1:
        arr = np.repeat(arr, 3, axis=2)
    elif arr.shape[2] == 4:
        arr = arr[:, :, :3]
    if arr.dtype == np.uint8:
        return np.ascontiguousarray(arr)
    if np.issubdtype(arr.dtype, np.floating):
        if not np.isfinite(arr).all():
            raise ValueError(f"{name}: float image contains NaN or inf")
        lo, hi = float(arr.min()), float(arr.max())
        if lo < 0.0 or hi > 1.0:
            raise ValueError(f"{name}: float image values must lie in [0, 1], got [{lo:.4g}, {hi:.4g}]")
        return np.round(arr * 255.0).astype(np.uint8)
    raise ValueError(f"{name}: unsupported array dtype {arr.dtype} (use uint8, or float in [0, 1])")


def load_image(src: ImageLike) -> np.ndarray:
    """Return ``src`` as an HxWx3 uint8 RGB array (alpha dropped, grey expanded)."""
    if isinstance(src, np.ndarray):
        return _array_to_uint8(src, describe(src))
    if isinstance(src, Image.Image):
        return np.array(src.convert("RGB"), dtype=np.uint8)
    if isinstance(src, (str, os.PathLike)):
        path = Path(src)
        if not path.exists():
            raise FileNotFoundError(f"{path}: no such file")
        if path.is_dir():
            raise ValueError(f"{path}: is a directory, expected an image file")
        try:
            with Image.open(path) as im:
                return np.array(im.convert("RGB"), dtype=np.uint8)
        except (UnidentifiedImageError, OSError, SyntaxError) as exc:
            raise ValueError(f"{path}: cannot read image ({exc.__class__.__name__}: {exc})") from None
    raise TypeError(f"unsupported image input of type {type(src).__name__}")


def load_pair(a: ImageLike, b: ImageLike) -> tuple[np.ndarray, np.ndarray]:
    """Load two images and insist on equal sizes: full-reference metrics compare pixel by pixel."""
    x, y = load_image(a), load_image(b)
    if x.shape != y.shape:
        raise ValueError(
            f"{describe(a)} and {describe(b)}: images have different sizes "
            f"({x.shape[1]}x{x.shape[0]} vs {y.shape[1]}x{y.shape[0]})"
        )
    return x, y


def list_files(directory: Union[str, os.PathLike], exts: Sequence[str]) -> list[Path]:
    """Files directly inside ``directory`` whose suffix is in ``exts``, sorted by name."""
    d = Path(directory)
    if not d.exists():
        raise FileNotFoundError(f"{d}: no such directory")
    if not d.is_dir():
        raise ValueError(f"{d}: not a directory")
    files = sorted(p for p in d.iterdir() if p.is_file() and p.suffix.lower() in exts)
    if not files:
        raise ValueError(f"{d}: directory has no files with extensions {', '.join(exts)}")
    return files


def pair_files(dir_a: Union[str, os.PathLike], dir_b: Union[str, os.PathLike], exts: Sequence[str]) -> list[tuple[Path, Path]]:
    """Pair files of two directories by file name.

    Names present in only one directory are left out with a warning (a test
    set is often a subset of the references); no common name is an error.
    """
    a = {p.name: p for p in list_files(dir_a, exts)}
    b = {p.name: p for p in list_files(dir_b, exts)}
    common = sorted(a.keys() & b.keys())
    if not common:
        raise ValueError(f"{dir_a} and {dir_b}: no file names in common, cannot pair them")
    unmatched = len(a) + len(b) - 2 * len(common)
    if unmatched:
        warnings.warn(
            f"{dir_a} and {dir_b}: {unmatched} file(s) without a partner of the same name were skipped",
            stacklevel=3,
        )
    return [(a[n], b[n]) for n in common]


def is_dir_input(a: object, b: object) -> bool:
    """True when both inputs are directories; mixing a file and a directory is an error."""
    for src in (a, b):
        if isinstance(src, (str, os.PathLike)) and not Path(src).exists():
            raise FileNotFoundError(f"{src}: no such file or directory")
    a_dir = isinstance(a, (str, os.PathLike)) and Path(a).is_dir()
    b_dir = isinstance(b, (str, os.PathLike)) and Path(b).is_dir()
    if a_dir != b_dir:
        raise ValueError(f"{describe(a)} and {describe(b)}: cannot compare a directory with a single file")
    return a_dir


def batched(items: Sequence, size: int) -> Iterator[Sequence]:
    """Consecutive slices of at most ``size`` items."""
    for i in range(0, len(items), size):
        yield items[i : i + size]
