"""TaylorSeer: forecast a feature at a cached step from the last computed steps.

The spec's formula is a Taylor expansion whose derivatives are finite differences over a fixed
step interval N. This class instead uses *divided* differences over the real step indices: the
Newton form of the polynomial through the last m+1 computed points, exact for polynomials of
degree m at any gaps. It is NOT the spec's formula, even on equal gaps (its i-th term carries
k(k+N)... where the spec has k^i), and it takes derivatives from the very first steps; on the
reference model both cost image quality (benchmarks/forecast_replay.py).
:class:`cache_dit.calibrators.taylorseer.TaylorSeerCalibrator` is the spec's formula with
cache-dit 1.5.3's derivative estimates; :class:`cache_dit.calibrators.newton.NewtonCalibrator`
keeps this one behind the calibrator seam.
"""

from __future__ import annotations

import torch

__all__ = ["TaylorSeer"]


class TaylorSeer:
    """Order-m forecaster holding m+1 buffers: the divided differences ending at the newest point.

    ``diffs[i]`` is the i-th divided difference over nodes ``xs[0..i]`` (newest first), so
    ``diffs[0]`` is the newest value and the forecast is
    ``diffs[0] + diffs[1](x - xs[0]) + diffs[2](x - xs[0])(x - xs[1]) + ...``.
    """

    def __init__(self, order: int = 2) -> None:
        if isinstance(order, bool) or not isinstance(order, int) or order < 1:
            raise ValueError(f"TaylorSeer order (n_derivatives) must be an int >= 1, got {order!r}")
        self.order = order
        self.reset()

    def reset(self) -> None:
        self.xs: list[float] = []
        self.diffs: list[torch.Tensor] = []

    @property
    def ready(self) -> bool:
        return bool(self.diffs)

    def update(self, x: float, value: torch.Tensor) -> None:
        """Add the feature computed at step ``x`` (steps must increase)."""
        x = float(x)
        if self.xs and x <= self.xs[0]:
            raise ValueError(f"TaylorSeer.update: step {x} does not follow the last step {self.xs[0]}")
        new_diffs = [value]
        # d_{i+1}[x, x0..xi] = (d_i[x, x0..x_{i-1}] - d_i[x0..xi]) / (x - xi)
        for i in range(min(self.order, len(self.diffs))):
            new_diffs.append((new_diffs[i] - self.diffs[i]) / (x - self.xs[i]))
        self.xs = ([x] + self.xs)[: self.order + 1]
        self.diffs = new_diffs

    def forecast(self, x: float) -> torch.Tensor:
        """The Newton polynomial through the stored points, evaluated at step ``x``."""
        if not self.diffs:
            raise RuntimeError("TaylorSeer.forecast called before any update")
        out = self.diffs[0]
        weight = 1.0
        for i in range(1, len(self.diffs)):
            weight *= float(x) - self.xs[i - 1]
            out = out + self.diffs[i] * weight
        return out
