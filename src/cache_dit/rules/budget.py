"""A compute budget: keep a given fraction of block executions per generation, spent where the
measured change is largest.

With ``N`` steps, ``T`` blocks and ``k`` blocks that run even on a cached step (Fn + Bn), a
generation that computes ``C`` steps keeps ``(C*T + (N-C)*k) / (N*T)`` of the block executions, so
the budget fixes ``C`` (rounded to the nearest step) before the first step. Steps that must compute
anyway (warmup, a steps mask, the last step, and a head of the first 15% of the steps, at most half
of the computes) come out of it; the rest are placed online: a step
computes when the probe's change since the last computed step exceeds the change expected over an
even share of the remaining room (``rate * remaining steps / remaining computes``, ``rate`` the
measured change per step), and the count is enforced exactly (compute when every remaining step
is needed, cache when nothing is left). No calibration run is needed.
"""

from __future__ import annotations

import torch

from .base import StepSchedule
from .threshold import change_parts, parts_ratio

__all__ = ["BudgetRule", "BudgetState", "computed_steps_for_budget"]

RATE_SMOOTHING = 0.5  # weight of the newest per-step change in the running rate
HEAD_FRACTION = 0.15  # the first 15% of the steps compute (measured best on the reference model)


def computed_steps_for_budget(budget: float, num_steps: int, num_blocks: int,
                              kept_when_cached: int) -> int:
    """Computed steps whose kept fraction is nearest ``budget`` (at least one: step 0)."""
    if kept_when_cached >= num_blocks:
        return num_steps
    exact = num_steps * (budget * num_blocks - kept_when_cached) / (num_blocks - kept_when_cached)
    return min(num_steps, max(1, int(exact + 0.5)))


class BudgetState:
    """Per-stream: the generation's schedule, computes left, and the measured change rate."""

    def __init__(self, schedule: StepSchedule, computes: int) -> None:
        self.schedule = schedule
        self.computes = computes
        steps = schedule.num_steps
        # Steps that compute whatever the probe says: warmup, mask, the first and the last...
        self.required = frozenset(s for s in schedule.forced if s < steps) | {0, steps - 1}
        # ...and a protected head (errors made early travel through every later step), as far
        # as the budget allows.
        must = set(self.required)
        # The head never takes more than half of the computes: with a small budget the rest
        # must still be spread over the trajectory (all computes in the head leave one long
        # cached run: 14 dB on the reference model at 0.3 kept; a third was 18 dB there but
        # lost 1-3 dB at 0.4-0.5 kept, where half leaves the 15% head whole).
        head = min(round(HEAD_FRACTION * steps), max(1, computes // 2))
        for step in range(max(1, head)):
            if step not in must and len(must) < computes:
                must.add(step)
        self.must = frozenset(must)
        self.reset()

    def reset(self) -> None:
        self.reference: torch.Tensor | None = None
        self.last_computed = -1
        self.computed = 0
        self.rate: float | None = None  # relative-L1 change per step
        self.diff: float | None = None


class BudgetRule:
    """Keep ``budget`` of the block executions of every generation of every stream."""

    def __init__(self, budget: float, num_blocks: int, kept_when_cached: int) -> None:
        self.budget = budget
        self.num_blocks = num_blocks
        self.kept_when_cached = kept_when_cached

    def new_state(self, schedule: StepSchedule) -> BudgetState:
        steps = schedule.num_steps
        if steps is None:
            raise ValueError(
                f"compute_budget={self.budget} needs the number of steps of a generation: use a "
                f"pipeline (its scheduler says) or pass num_inference_steps= for a custom loop")
        computes = computed_steps_for_budget(self.budget, steps, self.num_blocks,
                                             self.kept_when_cached)
        state = BudgetState(schedule, computes)
        if len(state.required) > computes:
            raise ValueError(
                f"compute_budget={self.budget} allows {computes} computed steps of {steps}, but "
                f"{len(state.required)} must compute (warmup_steps, steps_computation_mask, first "
                f"and last step): raise the budget or free steps")
        return state

    def parts(self, state: BudgetState, step: int, probe: torch.Tensor) -> torch.Tensor | None:
        return change_parts(probe, state.reference)

    def decide(self, state: BudgetState, step: int, values: list[float]) -> tuple[bool, float]:
        diff = parts_ratio(values)
        state.diff = diff
        steps = state.schedule.num_steps
        if step in state.must or step >= steps:
            return False, diff
        left = state.computes - state.computed - sum(1 for s in state.must if s > step)
        room = sum(1 for s in range(step, steps) if s not in state.must)  # this one included
        if left <= 0:
            return True, diff
        if left >= room:
            return False, diff
        since = step - state.last_computed
        rate = state.rate if state.rate is not None else diff / since
        return diff < rate * room / left, diff

    def on_compute(self, state: BudgetState, step: int, probe: torch.Tensor | None) -> None:
        self._observe(state, step)
        state.reference = probe
        state.last_computed = step
        state.computed += 1
        state.diff = None

    def on_cache(self, state: BudgetState, step: int, probe: torch.Tensor | None) -> None:
        self._observe(state, step)
        state.diff = None

    @staticmethod
    def _observe(state: BudgetState, step: int) -> None:
        """Fold this step's measured change (vs the last computed step) into the rate."""
        if state.diff is None or state.last_computed < 0:
            return
        per_step = state.diff / (step - state.last_computed)
        state.rate = per_step if state.rate is None else (
            RATE_SMOOTHING * per_step + (1 - RATE_SMOOTHING) * state.rate)
