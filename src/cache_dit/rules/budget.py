"""A compute budget: keep a given fraction of block executions per generation, spent where the
measured change is largest.

With ``N`` steps, ``T`` blocks and ``k`` blocks that run even on a cached step (Fn + Bn), a
generation that computes ``C`` steps keeps ``(C*T + (N-C)*k) / (N*T)`` of the block executions, so
the budget fixes ``C`` (rounded to the nearest step) before the first step. Steps that must compute
anyway (step 0, warmup, a steps mask, and a head of the first 25% of the steps, at most half of the
computes) come out of it. The rest are placed online: a free step caches while the steps since the
last computed one are fewer than an even share of the remaining room (remaining steps / remaining
computes), an interval whose first step moved faster than the recent pace getting a shorter share
(pace / that change). The count is enforced exactly (compute when every remaining step is needed,
cache when nothing is left). No calibration run is needed.

With no probe (``Fn_compute_blocks=0``) there is nothing to measure. A budget that computes at most
60% of the steps lays its computes out before the first step (:func:`probe_free_steps`): the
``i``-th of ``C`` sits at ``(i / (C-1)) ** spacing`` of the way to the second-last step, so computes
crowd the first steps (the jump from pure noise and the layout, whose errors travel through every
later step), the gaps grow towards the end and the last step is left to the calibrator. Above 60%
the head-and-even-share placement above does better (it runs out of room at the end and computes
the last steps, where a trained model's output changes fastest again). Measured with FoCa
(frontier benchmark and ``benchmarks/bench_probe_free_spacing.py``): spacing 1.5 on the two
trained reference models (11 of 28 steps: 45.3 dB against 39.5 with the head and even shares);
1.0 (even) on the random-weight medium FLUX, whose change grows steadily instead. Beyond 60% the
head-and-share placement wins by 2.4-3.2 dB on both trained models.

Each choice was measured on the reference model (3 seeds) and on medium FLUX with FoCa at budgets
0.3-0.7 (``benchmarks/bench_budget_placement.py``; tables in ``benchmarks/results/``):

- the change into step 1 (the jump away from pure noise, ~9x the pace that follows on the
  reference model) stays out of the pace: +3.5 to +4.5 dB there at 0.5-0.7 kept;
- a 25% head, not 15%: +8.6 dB on the reference model at 0.6 kept (+1 at 0.7, 0 below);
- the last step is free, not forced: a calibrator stands in for it well and the compute is worth
  more mid-trajectory (+2 to +6.5 dB on the reference model, -1.3 dB at 0.6);
- steps are counted against the share instead of comparing the accumulated change with
  ``pace * share``: the change over k steps is often far from k single steps (sublinear on medium
  FLUX, where the accumulated form fell behind and computed back to back at the end): +0.5 to
  +4.2 dB on medium FLUX, -2.6 to +0.7 dB on the reference model (both forms beat the best fixed
  threshold there).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from .base import StepSchedule
from .threshold import change_parts, parts_ratio

__all__ = ["BudgetRule", "BudgetState", "Placement", "computed_steps_for_budget",
           "probe_free_steps", "DEFAULT_SPACING", "CROWDED_UP_TO"]

DEFAULT_SPACING = 1.5
CROWDED_UP_TO = 0.6  # probe-free budgets computing at most this share of the steps are laid out


@dataclass(frozen=True)
class Placement:
    """Where a budget's computes go. The defaults are the measured best; the other values are
    kept for the ablation in ``benchmarks/bench_budget_placement.py``.

    Attributes:
        head_fraction: the first ``head_fraction`` of the steps compute (at most half the computes).
        first_paced_step: changes measured before this step stay out of the rate (the change into
            step 1 is the jump from pure noise, not the trajectory's pace).
        rate_smoothing: weight of the newest per-step change in the running rate.
        force_last_step: the last step always computes.
        spacing: probe-free budgets computing at most ``CROWDED_UP_TO`` of the steps: the exponent
            of :func:`probe_free_steps` (1: even).
        paced_by: ``"first_step"``: a free step caches while the steps since the last computed one
            are fewer than an even share of the room, scaled by (recent pace / this interval's
            first-step change); the pace is a running (exponential) mean of first-step changes.
            ``"accumulated"``: it caches while the change since the last computed step is below
            ``rate * room / computes left``, the rate a running mean of change / steps.
    """

    head_fraction: float = 0.25
    first_paced_step: int = 2
    rate_smoothing: float = 0.5
    force_last_step: bool = False
    paced_by: Literal["first_step", "accumulated"] = "first_step"
    spacing: float = DEFAULT_SPACING

    def __post_init__(self) -> None:
        check_spacing(self.spacing)
        if self.paced_by not in ("first_step", "accumulated"):
            raise ValueError(f"paced_by must be 'first_step' or 'accumulated', got {self.paced_by!r}")


def computed_steps_for_budget(budget: float, num_steps: int, num_blocks: int,
                              kept_when_cached: int) -> int:
    """Computed steps whose kept fraction is nearest ``budget`` (at least one: step 0)."""
    if kept_when_cached >= num_blocks:
        return num_steps
    exact = num_steps * (budget * num_blocks - kept_when_cached) / (num_blocks - kept_when_cached)
    return min(num_steps, max(1, int(exact + 0.5)))


def check_spacing(spacing: object) -> float:
    """``spacing`` as a float in [0.5, 4], or a ValueError naming the value."""
    if isinstance(spacing, bool) or not isinstance(spacing, (int, float)) or not 0.5 <= spacing <= 4:
        raise ValueError(f"budget_spacing must be a number in [0.5, 4] (1: even computes, larger: "
                         f"crowded into the first steps), got {spacing!r}")
    return float(spacing)


def probe_free_steps(num_steps: int, computes: int, required: frozenset[int] = frozenset({0}),
                     spacing: float = DEFAULT_SPACING) -> frozenset[int]:
    """The ``computes`` steps a probe-free budget computes, ``required`` among them.

    The ``i``-th of ``C`` is step ``round(end * (i / (C-1)) ** spacing)`` with ``end`` the
    second-last step, pushed apart where two round to the same step. Required steps (0, warmup,
    a mask) are added; for each one added, the placed step nearest another computed step (the
    later on a tie) is dropped again, so the count stays exact."""
    if computes >= num_steps:
        return frozenset(range(num_steps))
    end = num_steps - 2  # the last step is left to the calibrator
    placed: list[int] = []
    for i in range(computes):
        step = round(end * (i / (computes - 1)) ** spacing) if computes > 1 else 0
        placed.append(max(step, placed[-1] + 1) if placed else step)
    for j in range(computes - 1, -1, -1):  # pushed past the end: pull back, keeping the order
        placed[j] = min(placed[j], end - (computes - 1 - j))
    chosen = set(placed) | set(required)
    while len(chosen) > computes:
        free = [s for s in chosen if s not in required]
        if not free:
            break  # more required steps than computes: the caller reports it
        ordered = sorted(chosen)

        def crowding(step: int) -> tuple[int, int]:
            at = ordered.index(step)
            near = [abs(step - ordered[k]) for k in (at - 1, at + 1) if 0 <= k < len(ordered)]
            return (min(near), -step)

        chosen.remove(min(free, key=crowding))
    return frozenset(chosen)


class BudgetState:
    """Per-stream: the generation's schedule, computes left, and the measured change rate."""

    def __init__(self, schedule: StepSchedule, computes: int,
                 placement: Placement = Placement()) -> None:
        self.schedule = schedule
        self.computes = computes
        self.placement = placement
        steps = schedule.num_steps
        # Steps that compute whatever the probe says: warmup, mask and the first...
        required = {s for s in schedule.forced if s < steps} | {0}
        if placement.force_last_step:
            required.add(steps - 1)
        self.required = frozenset(required)
        # ...and a protected head (errors made early travel through every later step), as far
        # as the budget allows.
        must = set(self.required)
        # The head never takes more than half of the computes: with a small budget the rest
        # must still be spread over the trajectory (all computes in the head leave one long
        # cached run: 14 dB on the reference model at 0.3 kept; a third lost 1-3 dB at 0.4-0.5).
        head = min(round(placement.head_fraction * steps), max(1, computes // 2))
        for step in range(max(1, head)):
            if step not in must and len(must) < computes:
                must.add(step)
        self.must = frozenset(must)
        # Without a probe (decide_without_probe), a small budget's computes are laid out now.
        self.layout = (probe_free_steps(steps, computes, self.required, placement.spacing)
                       if computes <= CROWDED_UP_TO * steps else None)
        self.reset()

    def reset(self) -> None:
        self.reference: torch.Tensor | None = None
        self.last_computed = -1
        self.computed = 0
        self.rate: float | None = None  # relative-L1 change per step
        self.first_change: float | None = None  # the current interval's first step's change
        self.diff: float | None = None


class BudgetRule:
    """Keep ``budget`` of the block executions of every generation of every stream."""

    def __init__(self, budget: float, num_blocks: int, kept_when_cached: int,
                 placement: Placement = Placement()) -> None:
        self.budget = budget
        self.num_blocks = num_blocks
        self.kept_when_cached = kept_when_cached
        self.placement = placement

    def new_state(self, schedule: StepSchedule) -> BudgetState:
        steps = schedule.num_steps
        if steps is None:
            raise ValueError(
                f"compute_budget={self.budget} needs the number of steps of a generation: use a "
                f"pipeline (its scheduler says) or pass num_inference_steps= for a custom loop")
        computes = computed_steps_for_budget(self.budget, steps, self.num_blocks,
                                             self.kept_when_cached)
        state = BudgetState(schedule, computes, self.placement)
        if len(state.required) > computes:
            last = ", the last step" if self.placement.force_last_step else ""
            raise ValueError(
                f"compute_budget={self.budget} allows {computes} computed steps of {steps}, but "
                f"{len(state.required)} must compute (warmup_steps, steps_computation_mask, the "
                f"first step{last}): raise the budget or free steps")
        return state

    def parts(self, state: BudgetState, step: int, probe: torch.Tensor) -> torch.Tensor | None:
        return change_parts(probe, state.reference)

    def decide(self, state: BudgetState, step: int, values: list[float]) -> tuple[bool, float]:
        diff = parts_ratio(values)
        state.diff = diff
        return self._may_cache(state, step, diff), diff

    def decide_without_probe(self, state: BudgetState, step: int) -> bool:
        """Fn_compute_blocks=0: cache the steps the layout leaves out (at most 60% computed),
        else the head, then an even share of the room per compute."""
        state.diff = None
        if state.layout is None:
            return self._may_cache(state, step, None)
        return step < state.schedule.num_steps and step not in state.layout

    def _may_cache(self, state: BudgetState, step: int, diff: float | None) -> bool:
        steps = state.schedule.num_steps
        if step in state.must or step >= steps:
            return False
        left = state.computes - state.computed - sum(1 for s in state.must if s > step)
        room = sum(1 for s in range(step, steps) if s not in state.must)  # this one included
        if left <= 0:
            return True
        if left >= room:
            return False
        since = step - state.last_computed
        if since == 1:
            state.first_change = diff
        if diff is not None and state.placement.paced_by == "accumulated":
            rate = state.rate if state.rate is not None else diff / since
            return diff < rate * room / left
        # An even share of the room, shortened when this interval's first step moved faster than
        # the recent pace (and lengthened when slower). Steps, not the accumulated change, are
        # counted against it: the change over k steps is often far from k single steps.
        pace = 1.0
        if state.rate and state.first_change:
            pace = state.rate / state.first_change
        return since < pace * room / left

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
        placement = state.placement
        if state.diff is None or state.last_computed < 0 or step < placement.first_paced_step:
            return
        since = step - state.last_computed
        if placement.paced_by == "first_step" and since != 1:
            return
        per_step = state.diff / since
        state.rate = per_step if state.rate is None else (
            placement.rate_smoothing * per_step + (1 - placement.rate_smoothing) * state.rate)
