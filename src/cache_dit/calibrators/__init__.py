"""Calibrators: what stands in for skipped blocks on a cached step (see :mod:`.base`)."""

from .base import Calibrator

__all__ = ["Calibrator"]
