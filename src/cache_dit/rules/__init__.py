"""Decision rules: when the middle blocks may be skipped (see :mod:`.base`).

A new rule is one file here plus one entry in :data:`RULES` (keyed by ``cache_type``).
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Callable, Mapping

from ..options import CacheOptions
from .base import DecisionRule
from .threshold import ResidualDiffRule

__all__ = ["DecisionRule", "ResidualDiffRule", "RULES", "make_rule"]

RULES: Mapping[str, Callable[[CacheOptions], DecisionRule]] = MappingProxyType({
    "DBCache": lambda options: ResidualDiffRule(options.residual_diff_threshold),
})


def make_rule(options: CacheOptions) -> DecisionRule:
    """The decision rule ``options.cache_type`` names."""
    return RULES[str(options.cache_type)](options)
