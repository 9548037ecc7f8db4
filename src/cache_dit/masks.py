"""Step masks and block ranges: which steps must compute, which Bn blocks always run."""

from __future__ import annotations

from types import MappingProxyType
from typing import Mapping

__all__ = ["STEPS_MASK_PRESETS", "block_range", "steps_mask"]

# Steps-computation presets: (first steps always computed, compute every k-th step after them,
# last steps always computed). Steps outside the mask still follow the residual-diff threshold.
STEPS_MASK_PRESETS: Mapping[str, tuple[int, int, int]] = MappingProxyType({
    "slow": (8, 2, 2),
    "medium": (6, 3, 2),
    "fast": (4, 4, 1),
    "ultra": (3, 6, 1),
})


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
