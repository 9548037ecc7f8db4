"""Accumulated change (TeaCache / EasyCache style): sum the probe's step-to-step change since the
last computed step and compute once the sum reaches the threshold.

DBCache compares the probe with the last *computed* step's; this rule adds up the changes between
*consecutive* steps instead (the probe runs on every step), so a trajectory that wanders and comes
back still counts as having moved. By the triangle inequality the sum is never below DBCache's
statistic, so at one threshold it caches at most as often.
"""

from __future__ import annotations

import torch

from .threshold import change_parts, parts_ratio

__all__ = ["AccumulatedChangeRule", "AccumulatedChangeState"]


class AccumulatedChangeState:
    """The previous step's probe and the change accumulated since the last computed step."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.previous: torch.Tensor | None = None
        self.accumulated = 0.0
        self.pending = 0.0  # this step's change, folded in once the step is decided


class AccumulatedChangeRule:
    """Cache while the accumulated relative-L1 change stays below ``threshold``."""

    def __init__(self, threshold: float) -> None:
        self.threshold = threshold

    def new_state(self, schedule: object = None) -> AccumulatedChangeState:
        return AccumulatedChangeState()

    def parts(self, state: AccumulatedChangeState, step: int,
              probe: torch.Tensor) -> torch.Tensor | None:
        return change_parts(probe, state.previous)

    def decide(self, state: AccumulatedChangeState, step: int,
               values: list[float]) -> tuple[bool, float]:
        state.pending = parts_ratio(values)
        total = state.accumulated + state.pending
        return total < self.threshold, total

    def on_compute(self, state: AccumulatedChangeState, step: int,
                   probe: torch.Tensor | None) -> None:
        state.previous = probe
        state.accumulated = 0.0
        state.pending = 0.0

    def on_cache(self, state: AccumulatedChangeState, step: int,
                 probe: torch.Tensor | None) -> None:
        state.previous = probe
        state.accumulated += state.pending
        state.pending = 0.0
