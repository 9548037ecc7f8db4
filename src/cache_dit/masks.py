"""Step masks and block ranges: which steps must compute, which Bn blocks always run."""

from __future__ import annotations

from types import MappingProxyType
from typing import Any, Mapping, Sequence

__all__ = ["STEPS_MASK_PRESETS", "block_range", "checked_mask", "steps_mask"]

# Steps-computation presets: (first steps always computed, compute every k-th step after them,
# last steps always computed). Steps outside the mask still follow the residual-diff threshold.
STEPS_MASK_PRESETS: Mapping[str, tuple[int, int, int]] = MappingProxyType({
    "slow": (8, 2, 2),
    "medium": (6, 3, 2),
    "fast": (4, 4, 1),
    "ultra": (3, 6, 1),
})


def checked_mask(mask: Any, num_steps: Any = None) -> list[int] | str | None:
    """A ``steps_computation_mask`` option as given (``None``, a preset name) or as a list of ints,
    or a ValueError naming the bad value; a list must have ``num_steps`` entries when that is known."""
    if mask is None:
        return None
    if isinstance(mask, str):
        if mask not in STEPS_MASK_PRESETS:
            raise ValueError(
                f"steps_computation_mask preset {mask!r} is unknown; allowed presets: "
                f"{sorted(STEPS_MASK_PRESETS)} or a 0/1 list per step"
            )
        return mask
    if not isinstance(mask, Sequence) or not all(
        not isinstance(v, bool) and v in (0, 1) for v in mask
    ) or len(mask) == 0:
        raise ValueError(
            f"steps_computation_mask must be a non-empty list of 0/1 per step or a preset "
            f"name {sorted(STEPS_MASK_PRESETS)}, got {mask!r}"
        )
    if isinstance(num_steps, int) and not isinstance(num_steps, bool) and len(mask) != num_steps:
        raise ValueError(
            f"steps_computation_mask has {len(mask)} entries but num_inference_steps is "
            f"{num_steps}; give one 0/1 entry per step"
        )
    return [int(v) for v in mask]


def block_range(start: int, end: int, step: int = 1) -> list[int]:
    """Block ids ``start, start+step, ... < end`` (for ``Bn_compute_blocks_ids``)."""
    for name, value in (("start", start), ("end", end), ("step", step)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"block_range: {name} must be an int, got {value!r}")
    if step <= 0:
        raise ValueError(f"block_range: step must be >= 1, got {step}")
    if start < 0 or end < start:
        raise ValueError(f"block_range: need 0 <= start <= end, got start={start}, end={end}")
    return list(range(start, end, step))


def steps_mask(policy: str = "medium", total_steps: int = 28) -> list[int]:
    """A per-step 0/1 mask (1 = this step must run every block) from a named preset.

    Presets exist for any schedule length; they were tuned on 28- and 50-step schedules:
    ``slow`` (most compute, best quality) ... ``ultra`` (least compute).
    """
    if policy not in STEPS_MASK_PRESETS:
        raise ValueError(
            f"steps_mask: unknown policy {policy!r}; allowed: {sorted(STEPS_MASK_PRESETS)}"
        )
    if isinstance(total_steps, bool) or not isinstance(total_steps, int) or total_steps < 1:
        raise ValueError(f"steps_mask: total_steps must be an int >= 1, got {total_steps!r}")
    head, every, tail = STEPS_MASK_PRESETS[policy]
    mask = []
    for step in range(total_steps):
        must = step < head or step >= total_steps - tail or (step - head) % every == every - 1
        mask.append(int(must))
    return mask
