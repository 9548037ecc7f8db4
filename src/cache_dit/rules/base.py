"""The decision-rule seam: whether a stream's middle blocks may be skipped on this step.

A rule turns the first-n blocks' output residual (the *probe*) into a statistic in two parts:
:meth:`DecisionRule.parts` returns a small tensor of **sums** (reducible across the ranks of a
context-parallel group by adding them) and :meth:`DecisionRule.decide` turns the (possibly
reduced) parts, read to the host once, into a decision. Per-stream state lives in an object the
rule creates, so two CFG branches or two pipelines never share anything.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import torch

__all__ = ["DecisionRule", "ProbeFreeRule", "StepSchedule"]


@dataclass(frozen=True)
class StepSchedule:
    """What the controller knows about a generation before it starts."""

    num_steps: int | None
    forced: frozenset[int]  # steps that compute whatever the rule says (warmup, mask)


@runtime_checkable
class DecisionRule(Protocol):
    """A cache decision from the probe residual of the first-n blocks."""

    def new_state(self, schedule: StepSchedule) -> Any:
        """Fresh per-stream state (a new generation, or a new CFG branch); ``schedule`` says how
        many steps the generation has (when known) and which must compute anyway."""

    def parts(self, state: Any, step: int, probe: torch.Tensor) -> torch.Tensor | None:
        """Sums that make up the statistic (e.g. ``[sum|p - p_ref|, sum|p_ref|]``), or None
        when there is nothing to compare with yet (then the step computes)."""

    def decide(self, state: Any, step: int, values: list[float]) -> tuple[bool, float]:
        """(may cache, the statistic shown in summary()) from the host copy of the parts."""

    def on_compute(self, state: Any, step: int, probe: torch.Tensor | None) -> None:
        """The step ran every block: update references (``probe`` is None when the probe's
        shapes did not match)."""

    def on_cache(self, state: Any, step: int, probe: torch.Tensor | None) -> None:
        """The step was cached: update accumulators."""


@runtime_checkable
class ProbeFreeRule(Protocol):
    """A rule that can also decide with no probe at all (``Fn_compute_blocks=0``): from the step
    and its own schedule. ``on_compute`` / ``on_cache`` then get ``probe=None``."""

    def decide_without_probe(self, state: Any, step: int) -> bool:
        """May this step be cached (the controller's gates still apply)?"""
