"""Step bookkeeping shared by the calibrators: validation of step indices, with clear errors.

Kept apart from :mod:`.base` (the protocol) so every calibrator rejects bad input the same way.
"""

from __future__ import annotations

import torch

__all__ = ["check_int", "check_update", "check_approximate"]


def check_int(owner: str, name: str, value: object, minimum: int) -> int:
    """``value`` as an int >= ``minimum``, or a ValueError naming ``owner.name`` and the value."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{owner} {name} must be an int >= {minimum}, got {value!r}")
    return value


def _check_step(owner: str, method: str, step: object) -> int:
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise ValueError(f"{owner}.{method}: step must be an int >= 0, got {step!r}")
    return step


def check_update(owner: str, step: object, value: object, last: int | None) -> int:
    """Validate an ``update(step, value)``: an int step after ``last`` and a tensor value."""
    step = _check_step(owner, "update", step)
    if last is not None and step <= last:
        raise ValueError(f"{owner}.update: step {step} does not follow the last updated step {last}")
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{owner}.update: value must be a torch.Tensor, got {type(value).__name__}")
    return step


def check_approximate(owner: str, step: object, last: int | None) -> int:
    """Validate an ``approximate(step)``: something was updated and ``step`` lies after it."""
    step = _check_step(owner, "approximate", step)
    if last is None:
        raise RuntimeError(f"{owner}.approximate({step}) called before any update")
    if step <= last:
        raise ValueError(
            f"{owner}.approximate: step {step} must come after the last updated step {last}")
    return step
