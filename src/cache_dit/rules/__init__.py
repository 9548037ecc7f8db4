"""Decision rules: when the middle blocks may be skipped (see :mod:`.base`)."""

from .base import DecisionRule

__all__ = ["DecisionRule"]
