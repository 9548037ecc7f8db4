"""FoCa-style forecast-then-correct: a Heun (trapezoidal) step anchored at the last computed step.

On the k-th cached step after the computed step f (FoCa, arXiv 2508.16211, as cache-dit 1.5.3
implements it):

    slope_anchor = F(f) - F(f_prev)                 (the two newest computed steps)
    slope_local  = V(s-1) - V(s-2)                  (the two newest values, forecasts included)
    F(s) ~= F(f) + (k / 2) (slope_anchor + slope_local)            for k <= horizon
    F(s) ~= F(f) + (horizon / k) (horizon / 2) (slope_anchor + slope_local)   beyond it

and the forecast joins the rolling window, so a run of cached steps is predicted recursively
but always corrected back to the anchor. cache-dit treats every gap as one step
(``per_step_slopes=False``): after a computed step two steps from the previous one the anchor
slope is a two-step difference. ``per_step_slopes=True`` divides each slope by its gap.
Forecasts are memoised per step, so asking twice (or skipping a step) gives the same answer as
asking once at every cached step. ``derivative_start_step`` works as TaylorSeer's (default 0,
cache-dit's FoCa: slopes from the first two computed steps): an update before it holds the value.
"""

from __future__ import annotations

import torch

from ._history import check_approximate, check_int, check_update

__all__ = ["FoCaCalibrator"]


class FoCaCalibrator:
    """Heun forecast over the last computed steps and the running forecasts (4 tensors)."""

    def __init__(self, horizon: float | None = 3.0, per_step_slopes: bool = False,
                 derivative_start_step: int = 0) -> None:
        if horizon is not None and (isinstance(horizon, bool) or not isinstance(horizon, (int, float))
                                    or not horizon > 0 or horizon == float("inf")):
            raise ValueError(f"FoCaCalibrator horizon must be a finite number > 0 or None, got {horizon!r}")
        if not isinstance(per_step_slopes, bool):
            raise ValueError(f"FoCaCalibrator per_step_slopes must be True or False, got {per_step_slopes!r}")
        self.horizon = None if horizon is None else float(horizon)
        self.derivative_start_step = check_int("FoCaCalibrator", "derivative_start_step",
                                               derivative_start_step, 0)
        self.per_step_slopes = per_step_slopes
        self.reset()

    def reset(self) -> None:
        self.anchor: tuple[int, torch.Tensor] | None = None  # newest computed (step, value)
        self.anchor_prev: tuple[int, torch.Tensor] | None = None
        # The two newest values, computed or forecast: (step, value), newest last.
        self.window: list[tuple[int, torch.Tensor]] = []
        self.forecasts: dict[int, torch.Tensor] = {}

    @property
    def ready(self) -> bool:
        return self.anchor is not None

    def update(self, step: int, value: torch.Tensor) -> None:
        last = self.anchor[0] if self.anchor is not None else None
        step = check_update("FoCaCalibrator", step, value, last)
        if step < self.derivative_start_step:  # too early to take slopes across: hold the value
            self.anchor_prev, self.anchor, self.window = None, (step, value), [(step, value)]
        else:
            self.anchor_prev, self.anchor = self.anchor, (step, value)
            self.window = (self.window + [(step, value)])[-2:]
        self.forecasts = {}

    def _slope(self, newer: tuple[int, torch.Tensor], older: tuple[int, torch.Tensor]) -> torch.Tensor:
        difference = newer[1] - older[1]
        return difference / float(newer[0] - older[0]) if self.per_step_slopes else difference

    def _forecast(self, step: int) -> torch.Tensor:
        f, anchor = self.anchor
        slopes = self._slope(self.anchor, self.anchor_prev) + self._slope(self.window[1], self.window[0])
        elapsed = float(step - f)
        if self.horizon is None or elapsed <= self.horizon:
            return anchor + slopes * (elapsed / 2.0)
        weight = self.horizon / elapsed
        return anchor + slopes * (weight * self.horizon / 2.0)

    def approximate(self, step: int) -> torch.Tensor:
        step = check_approximate("FoCaCalibrator", step, self.anchor[0] if self.anchor else None)
        if self.anchor_prev is None or len(self.window) < 2:
            return self.anchor[1]  # one computed step: nothing to take a slope from
        if step not in self.forecasts:
            for s in range(self.window[1][0] + 1, step + 1):  # every step up to this one, in order
                value = self._forecast(s)
                self.forecasts[s] = value
                self.window = [self.window[1], (s, value)]
        return self.forecasts[step]

    def __repr__(self) -> str:
        return (f"FoCaCalibrator(horizon={self.horizon}, per_step_slopes={self.per_step_slopes}, "
                f"derivative_start_step={self.derivative_start_step})")
