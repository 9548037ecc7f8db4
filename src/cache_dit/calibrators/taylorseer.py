"""TaylorSeer as the spec writes it: a Taylor expansion around the newest computed step.

    F(s + k) ~= F(s) + sum_{i=1..m} d_i k^i / i!

The derivative estimates ``d_i`` form a ladder that each computed step refreshes from the
previous step's ladder: ``d_{i+1} = (d_i(new) - d_i(old)) / gap``. With ``gaps="latest"`` the gap
is the distance to the previous computed step, which is what cache-dit 1.5.3 computes (on equal
spacing N it is the spec's ``Delta^i F / N^i``); ``gaps="span"`` divides by the distance between
the centres of the two stencils instead (the derivative of the divided difference, so irregular
gaps keep the right scale).

Start-up matters more than the formula: the first denoising steps change fastest, and a
derivative taken across them overshoots later. ``derivative_start_step`` (default 3, cache-dit
1.5.3's effective value on a fresh pipeline call: its per-stream state is created lazily at the
first update, one step behind the step counter, and forms derivatives only once that counter
exceeds 1) makes updates before that step hold the value only.
"""

from __future__ import annotations

import math

import torch

from ._history import check_approximate, check_int, check_update

__all__ = ["TaylorSeerCalibrator"]

_GAPS = ("latest", "span")


class TaylorSeerCalibrator:
    """Order-m Taylor forecaster: m+1 buffers (value and m derivative estimates) per stream."""

    def __init__(self, order: int = 2, derivative_start_step: int = 3, gaps: str = "latest") -> None:
        self.order = check_int("TaylorSeerCalibrator", "order", order, 1)
        self.derivative_start_step = check_int(
            "TaylorSeerCalibrator", "derivative_start_step", derivative_start_step, 0)
        if gaps not in _GAPS:
            raise ValueError(f"TaylorSeerCalibrator gaps must be one of {_GAPS}, got {gaps!r}")
        self.gaps = gaps
        self.reset()

    def reset(self) -> None:
        # Steps of the last computed points, newest first (at most order + 1).
        self.steps: list[int] = []
        # derivatives[i]: the i-th derivative estimate at the newest step (0: the value itself).
        self.derivatives: list[torch.Tensor] = []

    @property
    def ready(self) -> bool:
        return bool(self.derivatives)

    def update(self, step: int, value: torch.Tensor) -> None:
        last = self.steps[0] if self.steps else None
        step = check_update("TaylorSeerCalibrator", step, value, last)
        ladder = [value]
        if self.derivatives and step >= self.derivative_start_step:
            for i in range(min(self.order, len(self.derivatives))):
                if self.gaps == "latest":
                    gap = float(step - self.steps[0])
                else:  # the centres of the two stencils lie (step - steps[i]) / (i + 1) apart
                    gap = (step - self.steps[i]) / (i + 1)
                ladder.append((ladder[i] - self.derivatives[i]) / gap)
        self.steps = ([step] + self.steps)[: self.order + 1]
        self.derivatives = ladder

    def approximate(self, step: int) -> torch.Tensor:
        last = self.steps[0] if self.steps else None
        step = check_approximate("TaylorSeerCalibrator", step, last)
        elapsed = float(step - last)
        out = self.derivatives[0]
        for i in range(1, len(self.derivatives)):
            out = out + self.derivatives[i] * (elapsed**i / math.factorial(i))
        return out

    def __repr__(self) -> str:
        return (f"TaylorSeerCalibrator(order={self.order}, "
                f"derivative_start_step={self.derivative_start_step}, gaps={self.gaps!r})")
