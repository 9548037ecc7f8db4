"""Today's forecaster behind the seam: the Newton polynomial through the last m+1 computed steps.

It is exact for polynomials of degree m at any gaps (``cache_dit.taylorseer.TaylorSeer``), which
is not the spec's Taylor formula: on equal gaps N its i-th term carries ``k(k+N)...`` where the
spec has ``k^i``. ``derivative_start_step`` = 0 reproduces today's behaviour exactly; a larger
value drops the points before it (an update there restarts the polynomial from that point).
"""

from __future__ import annotations

import torch

from ..taylorseer import TaylorSeer
from ._history import check_approximate, check_int, check_update

__all__ = ["NewtonCalibrator"]


class NewtonCalibrator:
    """Order-m Newton interpolating polynomial over the real step indices, extrapolated."""

    def __init__(self, order: int = 2, derivative_start_step: int = 0) -> None:
        self.order = check_int("NewtonCalibrator", "order", order, 1)
        self.derivative_start_step = check_int(
            "NewtonCalibrator", "derivative_start_step", derivative_start_step, 0)
        self._seer = TaylorSeer(self.order)
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
