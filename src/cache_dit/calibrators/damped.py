"""Damping: shrink any calibrator's forecast towards the newest computed feature.

A forecaster extrapolates the change measured between computed steps. Over a long run of cached
steps that change slows down (the trajectory settles), so the forecast overshoots; reusing the
last value as is undershoots. The damped stand-in takes a share of the forecast's change:

    V(s) = F(f) + damping * (forecast(s) - F(f))      f = the newest computed step

``damping=1`` is the forecaster itself, ``0`` plain reuse. The forecaster's own state (FoCa's
rolling window of forecasts) is left undamped: only what stands in is scaled. Probe-free on the
trained reference models at 8 of 28 steps, FoCa damped by 0.9 gained 0.9-1.1 dB on an unseen
seed; at 16 steps 0.2 dB at most, so :func:`cache_dit.search_steps` measures it per budget.
"""

from __future__ import annotations

import torch

from .base import Calibrator

__all__ = ["DampedCalibrator", "damped", "check_damping"]


def check_damping(name: str, value: object) -> float:
    """``value`` as a float in (0, 1], or an error naming ``name`` and the value."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number in (0, 1], got {value!r}")
    if not 0 < value <= 1:  # also rejects NaN
        raise ValueError(f"{name} must be in (0, 1] (1: the forecast as is), got {value}")
    return float(value)


class DampedCalibrator:
    """``inner``'s forecast, its change from the newest computed feature scaled by ``damping``."""

    def __init__(self, inner: Calibrator, damping: float) -> None:
        self.inner = inner
        self.damping = check_damping("DampedCalibrator damping", damping)
        self.anchor: torch.Tensor | None = None

    def reset(self) -> None:
        self.inner.reset()
        self.anchor = None

    @property
    def ready(self) -> bool:
        return self.inner.ready

    def update(self, step: int, value: torch.Tensor) -> None:
        self.inner.update(step, value)  # validates step and value
        self.anchor = value

    def approximate(self, step: int) -> torch.Tensor:
        forecast = self.inner.approximate(step)  # validates step
        return self.anchor + (forecast - self.anchor) * self.damping

    def __repr__(self) -> str:
        return f"DampedCalibrator({self.inner!r}, damping={self.damping})"


def damped(calibrator: Calibrator, damping: float) -> Calibrator:
    """``calibrator`` itself at ``damping=1``, else wrapped."""
    return calibrator if damping == 1 else DampedCalibrator(calibrator, damping)
