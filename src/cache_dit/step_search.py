"""Search which denoising steps to compute, on the user's own calls.

A probe-free budget places its computes by a formula (:mod:`cache_dit.rules.budget`); the best
places depend on the model. This search measures them: it scores a few formula layouts with the
target's compute count (mean PSNR of the calls against their uncached outputs, or your own
``metric``; FoCa standing in on every other step), then hill-climbs from the best one, moving one
compute at a time by one or two steps while that gains more than ``min_gain``:

    found = cache_dit.search_steps(pipe, calls=[dict(prompt="a cat", num_inference_steps=28)],
                                   target=0.5, save="steps.yaml")
    cache_dit.enable_cache(pipe, **found.options)  # or **cache_dit.load_options("steps.yaml")

Last, it tries damping the stand-in (``calibrator_damping``, :mod:`cache_dit.calibrators.damped`)
on the mask found, and keeps the best damping that gains more than ``min_gain``.
The calls run at most ``len(starts) + passes * 4 * C + len(dampings)`` times for ``C``
computes (usually far fewer: a pass ends the climb when it finds nothing): a one-off per model
and step count, like MagCache's calibration. The mask holds for that step count only. Search
on more than one call and check the mask on a call it was not searched on: on the reference
model at 11 of 28 steps, a mask searched on one seed won there and lost 1.3 dB to the formula on
another; even searched on four seeds it lost 1.2 dB there, while at 8 steps it gained 5.9 dB
(``benchmarks/bench_step_search.py``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from .api import _session_of, disable_cache, enable_cache
from .calibrate import _psnr, _Replay, save_options
from .calibrators.damped import check_damping
from .masks import checked_mask
from .options import CacheOptions, _check_float, _check_int
from .rules.budget import probe_free_steps

__all__ = ["StepSearch", "search_steps", "DEFAULT_SEARCH_BASE", "MOVES", "DAMPINGS"]

# What a step left out runs: no block at all, FoCa forecasting the whole chain.
DEFAULT_SEARCH_BASE: Mapping[str, Any] = {
    "Fn_compute_blocks": 0, "Bn_compute_blocks": 0, "calibrator": "foca",
}
MOVES = (-2, -1, 1, 2)  # how far the climb tries to move one compute
SPACINGS = (1.0, 1.5, 2.0)  # formula layouts scored as starts
DAMPINGS = (0.95, 0.9, 0.85, 0.8)  # calibrator_damping tried on the mask found


@dataclass
class StepSearch:
    """The mask found, the starts scored and every move the climb kept."""

    base: dict[str, Any]  # the options the mask runs with
    mask: list[int]
    psnr: float  # mean score of the search's metric (PSNR by default) against the uncached calls
    starts: list[tuple[str, list[int], float]] = field(default_factory=list)  # name, mask, score
    moves: list[tuple[int, int, float]] = field(default_factory=list)  # from, to, score after
    runs: int = 0  # cached replays of the calls the search made
    damping: float = 1.0  # calibrator_damping kept (1: none)
    dampings: list[tuple[float, float]] = field(default_factory=list)  # damping tried, score

    @property
    def options(self) -> dict[str, Any]:
        """Options for ``enable_cache``: the base with this mask (every other step cached)."""
        return _mask_options(self.base, self.mask, self.damping)


def _mask_options(base: Mapping[str, Any], mask: Sequence[int], damping: float) -> dict[str, Any]:
    """``base`` with ``mask`` deciding every step, and the damping unless it is 1 (none)."""
    damped = {} if damping == 1 else {"calibrator_damping": damping}
    return {**base, **damped, "warmup_steps": 0, "steps_computation_mask": list(mask)}


def formula_starts(steps: int, computes: int) -> list[tuple[str, list[int]]]:
    """The probe-free layouts at ``SPACINGS``, each also with its last compute moved to the last
    step (trained models' output changes fast again at the end), without duplicates. Above 60% of
    the steps a budget places its computes online instead; that placement is not among them."""
    starts: list[tuple[str, list[int]]] = []
    for spacing in SPACINGS:
        chosen = sorted(probe_free_steps(steps, computes, frozenset({0}), spacing))
        variants = [(f"spacing {spacing:g}", chosen)]
        if computes > 1 and chosen[-1] != steps - 1:
            variants.append((f"spacing {spacing:g}, last step", chosen[:-1] + [steps - 1]))
        for name, picked in variants:
            mask = [int(s in picked) for s in range(steps)]
            if all(mask != other for _, other in starts):
                starts.append((name, mask))
    return starts


def climb(mask: list[int], psnr: float, quality: Callable[[list[int]], float], passes: int,
          min_gain: float) -> tuple[list[int], float, list[tuple[int, int, float]]]:
    """Move one compute at a time by one of ``MOVES`` steps (never step 0, never onto a computed
    step), keeping the first move of each compute that gains more than ``min_gain`` dB."""
    mask, moves = list(mask), []
    for _ in range(passes):
        before = len(moves)
        for step in [s for s in range(1, len(mask)) if mask[s]]:
            for offset in MOVES:
                to = step + offset
                if not 1 <= to < len(mask) or mask[to]:
                    continue
                trial = list(mask)
                trial[step], trial[to] = 0, 1
                score = quality(trial)
                if score > psnr + min_gain:
                    mask, psnr = trial, score
                    moves.append((step, to, score))
                    break
        if len(moves) == before:
            break
    return mask, psnr, moves


def _reference_and_steps(pipe: Any, replay: _Replay) -> tuple[list[np.ndarray], int]:
    """The uncached outputs and the calls' common step count (the scheduler's, after each call)."""
    outputs, counts = [], []
    for index in range(len(replay.calls)):
        outputs.append(replay.run_one(index))
        counts.append(len(pipe.scheduler.timesteps))
    if len(set(counts)) != 1:
        raise ValueError(f"search_steps needs calls with one step count (a mask is per step "
                         f"count), got {counts}")
    return outputs, counts[0]


def search_steps(
    pipe: Any,
    calls: Sequence[Mapping[str, Any]],
    target: float,
    base: Mapping[str, Any] | None = None,
    start: Sequence[int] | None = None,
    passes: int = 3,
    min_gain: float = 0.05,
    metric: Callable[[np.ndarray, np.ndarray], float] | None = None,
    dampings: Sequence[float] = DAMPINGS,
    save: str | os.PathLike | None = None,
) -> StepSearch:
    """The steps to compute for ``target`` of the steps, found by a hill-climb on ``calls``.

    Args:
        pipe: an uncached diffusers pipeline whose ``scheduler`` has ``timesteps``.
        calls: keyword arguments of one or a few pipeline calls, all with the same step count.
        target: the fraction of steps to compute, in (0, 1] (rounded to whole steps, at least
            one: the first step always computes).
        base: options the mask runs with (default :data:`DEFAULT_SEARCH_BASE`); they must not
            set ``compute_budget`` or ``steps_computation_mask``, which the search decides.
        start: a 0/1 mask to climb from instead of the best formula layout (it sets the count).
        passes: climbing passes at most (each tries every move of every compute once).
        min_gain: the gain of the metric (dB by default) a move must bring to be kept.
        metric: ``metric(uncached, cached)`` scores one call's output (as a numpy array),
            higher is better; default: PSNR over the uncached output's value range (a whole
            call at once, unquantised). Search with the measure you will judge by.
        dampings: ``calibrator_damping`` values tried on the mask found (not when ``base``
            sets it); ``()`` tries none.
        save: write the chosen options as YAML here (read back with ``load_options``).

    The pipeline is left uncached.
    """
    if _session_of(pipe) is not None:
        raise ValueError("search_steps needs an uncached pipeline: call cache_dit.disable_cache first")
    if not calls or isinstance(calls, Mapping):
        raise ValueError(f"calls must be a non-empty list of keyword-argument dicts, got {calls!r}")
    CacheOptions(compute_budget=target)  # validates target, naming it
    _check_int("passes", passes, 0)
    _check_float("min_gain", min_gain)
    if metric is not None and not callable(metric):
        raise TypeError(f"metric must be a callable (uncached, cached) -> score or None, got {metric!r}")
    score_of = _psnr if metric is None else metric
    if isinstance(dampings, (str, bytes)) or not isinstance(dampings, Sequence):
        raise TypeError(f"dampings must be a sequence of numbers in (0, 1], got {dampings!r}")
    dampings = [check_damping("dampings entry", value) for value in dampings]
    base = dict(DEFAULT_SEARCH_BASE if base is None else base)
    taken = sorted({"compute_budget", "steps_computation_mask"} & set(base))
    if taken:
        raise ValueError(f"base must not set {taken}: search_steps decides which steps compute")
    replay = _Replay(pipe, calls)
    reference, steps = _reference_and_steps(pipe, replay)
    runs = 0

    def quality(trial: list[int], damping: float = 1.0) -> float:
        nonlocal runs
        enable_cache(pipe, **_mask_options(base, trial, damping))
        try:
            outputs = replay.run()
        finally:
            disable_cache(pipe)
        runs += 1
        return float(np.mean([score_of(r, o) for r, o in zip(reference, outputs)]))

    if start is not None:
        mask = checked_mask(list(start), steps)
        if not mask[0]:
            raise ValueError(f"start must compute step 0 (nothing to forecast from), got {start!r}")
        candidates = [("start", mask)]
    else:
        candidates = formula_starts(steps, max(1, round(target * steps)))
    scored = [(name, mask, quality(mask)) for name, mask in candidates]
    _, mask, psnr = max(scored, key=lambda item: item[2])
    mask, psnr, moves = climb(mask, psnr, quality, passes, min_gain)
    tried = [] if "calibrator_damping" in base else [(d, quality(mask, d)) for d in dampings]
    damping, best = max(tried, key=lambda item: item[1], default=(1.0, psnr))
    if best <= psnr + min_gain:
        damping, best = 1.0, psnr
    found = StepSearch(base=base, mask=mask, psnr=best, starts=scored, moves=moves, runs=runs,
                       damping=damping, dampings=tried)
    if save is not None:
        save_options(found.options, save)
    return found
