"""Calibrators: what stands in for skipped blocks on a cached step (see :mod:`.base`).

A new calibrator is one file here plus one entry in :data:`CALIBRATORS`.

| name | what stands in | measured on the reference model (benchmarks/forecast_replay.md) |
|---|---|---|
| ``reuse`` | the last computed residual (DBCache) | 33.4 dB mean over 11 cached-step patterns |
| ``taylorseer`` | the spec's Taylor formula, cache-dit 1.5.3's derivative ladder, derivatives from step 3 | 38.1 dB (order 2) |
| ``newton`` | the Newton polynomial through the last m+1 computed steps (this project's old TaylorSeer) | 29.5 dB (order 2) |
| ``foca`` | forecast, then a Heun-style correction (FoCa) with per-step slopes, from step 3 | 40.3 dB |
| ``hermite`` | scaled-Hermite forecast (HiCache), from step 3 | 39.3 dB (order 1) |

Any of them can be damped towards the last computed feature (:mod:`.damped`, the
``calibrator_damping`` option).
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Callable, Mapping

from .base import Calibrator
from .damped import DampedCalibrator, damped
from .foca import FoCaCalibrator
from .hermite import HermiteCalibrator
from .newton import NewtonCalibrator
from .reuse import ReuseCalibrator
from .taylorseer import TaylorSeerCalibrator

__all__ = ["Calibrator", "ReuseCalibrator", "TaylorSeerCalibrator", "NewtonCalibrator",
           "FoCaCalibrator", "HermiteCalibrator", "DampedCalibrator", "CALIBRATORS",
           "make_calibrator", "damped"]

# name -> factory(order); order is the user's taylorseer_kwargs["n_derivatives"].
CALIBRATORS: Mapping[str, Callable[[int], Calibrator]] = MappingProxyType({
    "reuse": lambda order: ReuseCalibrator(),
    "taylorseer": lambda order: TaylorSeerCalibrator(order, derivative_start_step=3),
    "newton": lambda order: NewtonCalibrator(order),
    "foca": lambda order: FoCaCalibrator(horizon=3.0, per_step_slopes=True,
                                         derivative_start_step=3),
    "hermite": lambda order: HermiteCalibrator(order, derivative_start_step=3),
})


def make_calibrator(name: str, order: int) -> Calibrator:
    """A fresh calibrator by registered name."""
    try:
        factory = CALIBRATORS[name]
    except KeyError:
        raise ValueError(f"unknown calibrator {name!r}; allowed: {sorted(CALIBRATORS)}") from None
    return factory(order)
