"""The calibrator seam: what stands in for the skipped blocks on a cached step.

A calibrator sees the feature (the skipped blocks' residual, or their output hidden states) of
every *computed* step and produces an approximation of it at a cached step. Plain reuse of the
last residual is order 0; TaylorSeer extrapolates from the last m+1 computed steps. One instance
serves one stream (CFG branch) and one block-list segment, so it never mixes unlike tensors.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch

__all__ = ["Calibrator"]


@runtime_checkable
class Calibrator(Protocol):
    """Per-stream, per-segment approximator of a feature at cached steps.

    Steps are the stream's own step indices (0, 1, 2, ... in call order), increasing; computed
    steps may be irregular (DBCache computes, caches 3, computes, ...).
    """

    def reset(self) -> None:
        """Forget everything (a new generation starts)."""

    @property
    def ready(self) -> bool:
        """True once :meth:`approximate` can be called."""

    def update(self, step: int, value: torch.Tensor) -> None:
        """Record the real feature of computed step ``step``."""

    def approximate(self, step: int) -> torch.Tensor:
        """The stand-in feature for cached step ``step`` (> every updated step)."""
