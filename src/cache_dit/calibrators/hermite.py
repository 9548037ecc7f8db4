"""Scaled-Hermite forecast (HiCache, arXiv 2508.16984): TaylorSeer with Hermite polynomials.

The derivative estimates are TaylorSeer's (:class:`.taylorseer.TaylorSeerCalibrator`: cache-dit
1.5.3's ladder and start-up); the forecast ``k`` steps after the newest computed step replaces
the monomial ``k^i`` by the scaled physicists' Hermite polynomial ``sigma^i H_i(sigma k)``:

    F(s + k) ~= F(s) + sum_{i=1..m} d_i sigma^i H_i(sigma k) / i!,   H_1(y) = 2y, H_2(y) = 4y^2 - 2, ...

so order 1 is TaylorSeer with its slope scaled by ``2 sigma^2`` (``sigma = 1/sqrt(2)`` gives
TaylorSeer exactly) and higher orders are damped further. Why: the features' derivative
estimates are noisy; shrinking the extrapolation beats trusting it fully (see
``benchmarks/forecast_replay.py``).
"""

from __future__ import annotations

import math

import torch

from ._history import check_approximate
from .taylorseer import TaylorSeerCalibrator

__all__ = ["HermiteCalibrator", "hermite"]


def hermite(y: float, n: int) -> float:
    """The physicists' Hermite polynomial H_n(y), by the recurrence H_{n+1} = 2y H_n - 2n H_{n-1}."""
    previous, current = 1.0, 2.0 * y
    if n == 0:
        return previous
    for k in range(1, n):
        previous, current = current, 2.0 * y * current - 2.0 * k * previous
    return current


class HermiteCalibrator(TaylorSeerCalibrator):
    """Order-m scaled-Hermite forecaster over TaylorSeer's derivative ladder (m+1 buffers)."""

    def __init__(self, order: int = 1, sigma: float = 0.63, derivative_start_step: int = 3,
                 gaps: str = "latest") -> None:
        if isinstance(sigma, bool) or not isinstance(sigma, (int, float)) or not 0 < sigma <= 1:
            raise ValueError(f"HermiteCalibrator sigma must be a number in (0, 1], got {sigma!r}")
        self.sigma = float(sigma)
        super().__init__(order, derivative_start_step, gaps)

    def approximate(self, step: int) -> torch.Tensor:
        check_approximate("HermiteCalibrator", step, self.steps[0] if self.steps else None)
        elapsed = float(step - self.steps[0])
        out = self.derivatives[0]
        for i in range(1, len(self.derivatives)):
            weight = self.sigma**i * hermite(self.sigma * elapsed, i) / math.factorial(i)
            out = out + self.derivatives[i] * weight
        return out

    def __repr__(self) -> str:
        return (f"HermiteCalibrator(order={self.order}, sigma={self.sigma}, "
                f"derivative_start_step={self.derivative_start_step}, gaps={self.gaps!r})")
