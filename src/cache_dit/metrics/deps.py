"""Optional third-party packages the metrics need only for some inputs.

PyAV decodes videos; image metrics must work without it, so it is imported
only when a video is read, and its absence is a one-line, fixable error.
This module imports nothing heavy: the CLI catches its error type before any
metric module is loaded.
"""

from __future__ import annotations

import importlib
from types import ModuleType

PYAV_INSTALL = "pip install av  (or: pip install 'cache-dit[metrics]')"


class MissingDependencyError(ImportError):
    """An optional package needed for this kind of input is not installed (the message says how to install it)."""


def require_pyav() -> ModuleType:
    """The ``av`` module, or MissingDependencyError naming PyAV and how to install it."""
    try:
        return importlib.import_module("av")
    except ImportError:
        raise MissingDependencyError(
            f"video inputs need PyAV (the `av` package), which is not installed: {PYAV_INSTALL}", name="av"
        ) from None
