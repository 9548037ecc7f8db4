"""Forecast-aware decisions: cache when the calibrator would have predicted this step's probe.

With a forecasting calibrator the first-n blocks still run on a cached step, so their output is a
free check of the forecast: this rule forecasts the probe (the first-n output residual) with a
calibrator of the same kind as the one that stands in for the middle blocks, fed the same
computed steps, and caches when the relative L1 error of that forecast is below the threshold.
The raw change since the last computed step (DBCache) says how far the features moved; this says
whether the stand-in can follow them.
"""

from __future__ import annotations

from typing import Callable

import torch

from ..calibrators import Calibrator
from .threshold import change_parts, parts_ratio

__all__ = ["ForecastErrorRule", "ForecastErrorState"]


class ForecastErrorState:
    """A calibrator of the probe, updated on computed steps only (like the stand-in's)."""

    def __init__(self, calibrator: Calibrator) -> None:
        self.calibrator = calibrator
        self.reset()

    def reset(self) -> None:
        self.calibrator.reset()


class ForecastErrorRule:
    """Cache while ``|probe - forecast(probe)| / |forecast(probe)|`` is below ``threshold``."""

    def __init__(self, threshold: float, make_calibrator: Callable[[], Calibrator]) -> None:
        self.threshold = threshold
        self.make_calibrator = make_calibrator

    def new_state(self, schedule: object = None) -> ForecastErrorState:
        return ForecastErrorState(self.make_calibrator())

    def parts(self, state: ForecastErrorState, step: int, probe: torch.Tensor) -> torch.Tensor | None:
        if not state.calibrator.ready:
            return None
        return change_parts(probe, state.calibrator.approximate(step))

    def decide(self, state: ForecastErrorState, step: int, values: list[float]) -> tuple[bool, float]:
        error = parts_ratio(values)
        return error < self.threshold, error

    def on_compute(self, state: ForecastErrorState, step: int, probe: torch.Tensor | None) -> None:
        if probe is None:
            state.calibrator.reset()
        else:
            state.calibrator.update(step, probe)

    def on_cache(self, state: ForecastErrorState, step: int, probe: torch.Tensor | None) -> None:
        pass
