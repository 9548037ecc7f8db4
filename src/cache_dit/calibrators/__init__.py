"""Calibrators: what stands in for skipped blocks on a cached step (see :mod:`.base`).

A new calibrator is one file here plus one entry in :data:`CALIBRATORS`.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Callable, Mapping

from .base import Calibrator
from .reuse import Reuse
from .taylorseer import TaylorSeer

__all__ = ["Calibrator", "Reuse", "TaylorSeer", "CALIBRATORS", "make_calibrator"]

# name -> factory(order) ; order is the user's n_derivatives where the calibrator has one.
CALIBRATORS: Mapping[str, Callable[[int], Calibrator]] = MappingProxyType({
    "reuse": lambda order: Reuse(),
    "taylorseer": TaylorSeer,
})


def make_calibrator(name: str, order: int) -> Calibrator:
    """A fresh calibrator by registered name."""
    try:
        factory = CALIBRATORS[name]
    except KeyError:
        raise ValueError(f"unknown calibrator {name!r}; allowed: {sorted(CALIBRATORS)}") from None
    return factory(order)
