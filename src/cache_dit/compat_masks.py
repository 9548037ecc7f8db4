"""``steps_mask`` that takes both our call form and cache-dit 1.x's.

Ours: ``steps_mask("fast", 28)`` (presets: head / every k-th / tail, see
:data:`cache_dit.STEPS_MASK_PRESETS`). cache-dit 1.x: ``steps_mask(compute_bins=[6, 1, ...],
cache_bins=[1, 3, ...])`` (alternating runs of computed and cached steps) or
``steps_mask(mask_policy="fast", total_steps=28)`` with 1.x's own presets, which are tables of
bins for 28 steps, trimmed from the end for 16-27 steps. Other step counts of a 1.x preset
raise (1.x rescales them with its own tables); pass bins, or use our presets.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Any, Sequence

from .options import steps_mask as native_steps_mask

__all__ = ["steps_mask", "bins_mask", "PRESETS_1X"]

# 1.x presets for 28 steps: (compute bins, cache bins); the last step always computes.
PRESETS_1X = MappingProxyType({
    "slow": ((8, 3, 3, 2, 1, 1), (1, 2, 2, 2, 3)),
    "medium": ((6, 2, 2, 2, 2, 1), (1, 3, 3, 3, 3)),
    "fast": ((6, 1, 1, 1, 1, 1), (1, 3, 4, 5, 4)),
    "ultra": ((4, 1, 1, 1, 1), (2, 5, 6, 7)),
})


def _check_bins(name: str, bins: Sequence[int]) -> list[int]:
    if isinstance(bins, (str, bytes)) or not isinstance(bins, Sequence) or not all(
            isinstance(b, int) and not isinstance(b, bool) and b >= 0 for b in bins):
        raise ValueError(f"steps_mask: {name} must be a list of ints >= 0, got {bins!r}")
    return list(bins)


def bins_mask(compute_bins: Sequence[int], cache_bins: Sequence[int],
              total_steps: int | None = None) -> list[int]:
    """1 for each step of ``compute_bins[0]``, 0 for ``cache_bins[0]``, 1 for ``compute_bins[1]``,
    ... cut to ``total_steps`` (default: all bins)."""
    compute, cache = _check_bins("compute_bins", compute_bins), _check_bins("cache_bins", cache_bins)
    length = sum(compute) + sum(cache)
    if total_steps is None:
        total_steps = length
    if isinstance(total_steps, bool) or not isinstance(total_steps, int) or total_steps < 1:
        raise ValueError(f"steps_mask: total_steps must be an int >= 1, got {total_steps!r}")
    if length < total_steps:
        raise ValueError(f"steps_mask: the bins cover {length} steps, fewer than total_steps="
                         f"{total_steps}")
    mask: list[int] = []
    for i in range(max(len(compute), len(cache))):
        mask += [1] * (compute[i] if i < len(compute) else 0)
        mask += [0] * (cache[i] if i < len(cache) else 0)
    return mask[:total_steps]


def _trimmed(policy: str, total_steps: int) -> tuple[list[int], list[int]]:
    """1.x's 28-step bins, shortened from the end (cache bin, then compute bin) to the length."""
    compute, cache = (list(b) for b in PRESETS_1X[policy])
    while sum(compute) + sum(cache) > total_steps:
        for bins in (cache, compute):
            if bins and sum(compute) + sum(cache) > total_steps:
                bins[-1] -= 1
                if bins[-1] == 0:
                    bins.pop()
    return compute, cache


def steps_mask(*args: Any, policy: str | None = None, total_steps: int | None = None,
               compute_bins: Sequence[int] | None = None, cache_bins: Sequence[int] | None = None,
               mask_policy: str | None = None) -> list[int]:
    """A 0/1 per-step mask (1 = compute every block), from our preset or cache-dit 1.x's bins/presets.

    ``steps_mask("fast", 28)`` is ours (positional: policy, total_steps); a list as first argument
    is 1.x's positional form (compute_bins, cache_bins, total_steps, mask_policy); ``mask_policy=``
    selects 1.x's presets.
    """
    if args and isinstance(args[0], Sequence) and not isinstance(args[0], str):
        names = ("compute_bins", "cache_bins", "total_steps", "mask_policy")
    else:
        names = ("policy", "total_steps")
    if len(args) > len(names):
        raise TypeError(f"steps_mask takes at most {len(names)} positional arguments "
                        f"({', '.join(names)}), got {len(args)}")
    given = dict(policy=policy, total_steps=total_steps, compute_bins=compute_bins,
                 cache_bins=cache_bins, mask_policy=mask_policy)
    for name, value in zip(names, args):
        if given[name] is not None:
            raise TypeError(f"steps_mask got {name} twice")
        given[name] = value
    policy, total_steps, compute_bins, cache_bins, mask_policy = given.values()
    if compute_bins is not None or cache_bins is not None:
        if compute_bins is None or cache_bins is None:
            raise ValueError("steps_mask: pass both compute_bins and cache_bins")
        return bins_mask(compute_bins, cache_bins, total_steps)
    if mask_policy is None:
        return native_steps_mask("medium" if policy is None else policy,
                                 28 if total_steps is None else total_steps)
    if policy is not None:
        raise ValueError(f"steps_mask: pass a policy ({policy!r}) or mask_policy "
                         f"({mask_policy!r}), not both")
    if mask_policy not in PRESETS_1X:
        raise ValueError(f"steps_mask: unknown mask_policy {mask_policy!r}; allowed: "
                         f"{sorted(PRESETS_1X)}")
    if isinstance(total_steps, bool) or not isinstance(total_steps, int) or not 16 <= total_steps <= 28:
        raise ValueError(
            f"steps_mask: cache-dit 1.x's mask_policy presets are reproduced for 16-28 steps, got "
            f"total_steps={total_steps!r}; pass compute_bins/cache_bins, or use our presets: "
            f"steps_mask({mask_policy!r}, {total_steps!r})")
    mask = bins_mask(*_trimmed(mask_policy, total_steps), total_steps)
    mask[-1] = 1
    return mask
