"""Decision rules: when the middle blocks may be skipped (see :mod:`.base`).

A new rule is one file here plus one entry in :data:`RULES` (keyed by ``cache_type``).
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Callable, Mapping

from ..options import CacheOptions
from ..calibrators import make_calibrator
from ..plan import ChainPlan, Mode
from .accumulated import AccumulatedChangeRule
from .base import DecisionRule, StepSchedule
from .budget import DEFAULT_SPACING, BudgetRule, Placement
from .forecast_error import ForecastErrorRule
from .threshold import ResidualDiffRule

__all__ = ["DecisionRule", "StepSchedule", "ResidualDiffRule", "BudgetRule",
           "AccumulatedChangeRule", "ForecastErrorRule", "RULES", "make_rule"]

# decision_rule name -> factory(options, chain plan). compute_budget= selects "budget".
RULES: Mapping[str, Callable[[CacheOptions, ChainPlan], DecisionRule]] = MappingProxyType({
    "residual_diff": lambda options, plan: ResidualDiffRule(options.residual_diff_threshold),
    "accumulated": lambda options, plan: AccumulatedChangeRule(options.residual_diff_threshold),
    "forecast_error": lambda options, plan: ForecastErrorRule(
        options.residual_diff_threshold,
        lambda: make_calibrator(options.hidden_calibrator, options.taylorseer_order)),
    "budget": lambda options, plan: BudgetRule(
        options.compute_budget, plan.num_blocks, plan.kept[Mode.CACHE],
        Placement(spacing=DEFAULT_SPACING if options.budget_spacing is None else options.budget_spacing)),
})


def make_rule(options: CacheOptions, plan: ChainPlan) -> DecisionRule:
    """The decision rule the options name: a compute budget, else ``decision_rule``."""
    name = "budget" if options.compute_budget is not None else options.decision_rule
    return RULES[name](options, plan)
