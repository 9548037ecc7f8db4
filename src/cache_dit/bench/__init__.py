"""cache-dit-bench: speed/quality of cache configurations on a reference or a speed model."""

from .cli import main

__all__ = ["main"]
