"""Today's forecaster behind the seam: the Newton polynomial through the last m+1 computed steps.

It is exact for polynomials of degree m at any gaps (:class:`NewtonPolynomial`, the forecaster
``enable_taylorseer`` used before it was replaced by the spec's formula), which is not the spec's
Taylor formula: on equal gaps N its i-th term carries ``k(k+N)...`` where the
spec has ``k^i``. ``derivative_start_step`` = 0 reproduces today's behaviour exactly; a larger
value drops the points before it (an update there restarts the polynomial from that point).
"""

from __future__ import annotations

import torch

from ._history import check_approximate, check_int, check_update

__all__ = ["NewtonCalibrator", "NewtonPolynomial"]


class NewtonCalibrator:
    """Order-m Newton interpolating polynomial over the real step indices, extrapolated."""

    def __init__(self, order: int = 2, derivative_start_step: int = 0) -> None:
        self.order = check_int("NewtonCalibrator", "order", order, 1)
        self.derivative_start_step = check_int(
            "NewtonCalibrator", "derivative_start_step", derivative_start_step, 0)
        self._seer = NewtonPolynomial(self.order)
        self.reset()

    def reset(self) -> None:
        self._seer.reset()
        self.last_step: int | None = None

    @property
    def ready(self) -> bool:
        return self._seer.ready

    def update(self, step: int, value: torch.Tensor) -> None:
        self.last_step = check_update("NewtonCalibrator", step, value, self.last_step)
        if step < self.derivative_start_step:
            self._seer.reset()  # before the start only the newest value counts
        self._seer.update(step, value)

    def approximate(self, step: int) -> torch.Tensor:
        check_approximate("NewtonCalibrator", step, self.last_step)
        return self._seer.forecast(step)

    def __repr__(self) -> str:
        return (f"NewtonCalibrator(order={self.order}, "
                f"derivative_start_step={self.derivative_start_step})")


class NewtonPolynomial:
    """Order-m forecaster holding m+1 buffers: the divided differences ending at the newest point.

    ``diffs[i]`` is the i-th divided difference over nodes ``xs[0..i]`` (newest first), so
    ``diffs[0]`` is the newest value and the forecast is
    ``diffs[0] + diffs[1](x - xs[0]) + diffs[2](x - xs[0])(x - xs[1]) + ...``.
    """

    def __init__(self, order: int = 2) -> None:
        if isinstance(order, bool) or not isinstance(order, int) or order < 1:
            raise ValueError(f"Newton order (n_derivatives) must be an int >= 1, got {order!r}")
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
            raise ValueError(f"NewtonPolynomial.update: step {x} does not follow the last step {self.xs[0]}")
        new_diffs = [value]
        # d_{i+1}[x, x0..xi] = (d_i[x, x0..x_{i-1}] - d_i[x0..xi]) / (x - xi)
        for i in range(min(self.order, len(self.diffs))):
            new_diffs.append((new_diffs[i] - self.diffs[i]) / (x - self.xs[i]))
        self.xs = ([x] + self.xs)[: self.order + 1]
        self.diffs = new_diffs

    def forecast(self, x: float) -> torch.Tensor:
        """The Newton polynomial through the stored points, evaluated at step ``x``."""
        if not self.diffs:
            raise RuntimeError("NewtonPolynomial.forecast called before any update")
        out = self.diffs[0]
        weight = 1.0
        for i in range(1, len(self.diffs)):
            weight *= float(x) - self.xs[i - 1]
            out = out + self.diffs[i] * weight
        return out
