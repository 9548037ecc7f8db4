"""Decision rules: when the middle blocks may be skipped (see :mod:`.base`).

A new rule is one file here plus one entry in :data:`RULES` (keyed by ``cache_type``).
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Callable, Mapping

from ..options import CacheOptions
from ..plan import ChainPlan, Mode
from .base import DecisionRule, StepSchedule
from .budget import BudgetRule
from .threshold import ResidualDiffRule

__all__ = ["DecisionRule", "StepSchedule", "ResidualDiffRule", "BudgetRule", "RULES", "make_rule"]

# name -> factory(options, chain plan). "budget" is chosen by compute_budget=.
RULES: Mapping[str, Callable[[CacheOptions, ChainPlan], DecisionRule]] = MappingProxyType({
    "DBCache": lambda options, plan: ResidualDiffRule(options.residual_diff_threshold),
    "budget": lambda options, plan: BudgetRule(options.compute_budget, plan.num_blocks,
                                               plan.kept[Mode.CACHE]),
})


def make_rule(options: CacheOptions, plan: ChainPlan) -> DecisionRule:
    """The decision rule the options name: a compute budget, else ``cache_type``."""
    name = "budget" if options.compute_budget is not None else str(options.cache_type)
    return RULES[name](options, plan)
