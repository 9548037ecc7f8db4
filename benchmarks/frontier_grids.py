"""The knobs each library is swept over, as named, JSON-able option dicts.

Every grid is a list of ``(name, options)``. ``ours_grid`` options go straight to
``cache_dit.enable_cache(pipe, **options)``, so a new rule or calibrator joins the sweep by adding
option dicts in a new ``_ours_*`` function and listing it in ``OURS_FAMILIES``. The peers' dicts are
read by their own runners (``frontier_peers_worker.py`` for cache-dit 1.5.3, ``frontier_diffusers``
for diffusers' hooks), so this module imports no cache library. Thresholds are per model: the
reference models' first-block residual changes by ~0.07-0.13 per step, the medium random FLUX's by
~0.01-0.07 (see ``benchmarks/medium_flux.py``).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

Grid = list[tuple[str, dict[str, Any]]]


@dataclass(frozen=True)
class Scale:
    """Per-model knob ranges: thresholds, probe / tail block counts, and how dense to sweep."""

    thresholds: tuple[float, ...]
    fn: tuple[int, ...]
    bn: tuple[int, ...]
    fbcache_thresholds: tuple[float, ...]
    dense: bool


SCALES = {
    "reference": Scale((0.05, 0.08, 0.12, 0.16, 0.24, 0.32, 0.5), (1, 2), (0, 1),
                       (0.02, 0.05, 0.08, 0.12, 0.16, 0.24, 0.32, 0.5), True),
    "deep-reference": Scale((0.05, 0.08, 0.12, 0.16, 0.24, 0.32, 0.5), (1, 2), (0, 2),
                            (0.02, 0.05, 0.08, 0.12, 0.16, 0.24, 0.32, 0.5), True),
    "medium-flux": Scale((0.03, 0.05, 0.08, 0.12, 0.2, 0.3), (1, 4), (0, 4),
                         (0.01, 0.02, 0.03, 0.05, 0.08, 0.12, 0.2), False),
}
MASKS = ("slow", "medium", "fast", "ultra")
STATIC = 1e9  # a threshold no step reaches: every step outside the mask is cached


def scale_of(model: str) -> Scale:
    if model not in SCALES:
        raise ValueError(f"no knob ranges for model {model!r}; allowed: {', '.join(SCALES)}")
    return SCALES[model]


def _name(options: dict[str, Any]) -> str:
    """A short, stable knob string, e.g. ``F1B0 W4 R0.12 TS1``."""
    parts = [f"F{options.get('Fn', options.get('Fn_compute_blocks', 1))}"
             f"B{options.get('Bn', options.get('Bn_compute_blocks', 0))}"]
    warmup = options.get("warmup", options.get("warmup_steps"))
    if warmup is not None:
        parts.append(f"W{warmup}")
    threshold = options.get("threshold", options.get("residual_diff_threshold"))
    if threshold is not None:
        parts.append("Rstatic" if threshold >= STATIC else f"R{threshold:g}")
    mask = options.get("mask", options.get("steps_computation_mask"))
    if mask:
        parts.append(f"M{mask}" if isinstance(mask, str) else "M" + "".join(map(str, mask)))
    mcc = options.get("mcc", options.get("max_continuous_cached_steps", -1))
    if mcc != -1:
        parts.append(f"MCC{mcc}")
    if options.get("enable_taylorseer"):
        parts.append(f"TS{options['taylorseer_kwargs']['n_derivatives']}")
    if options.get("calibrator"):
        parts.append(options["calibrator"])
    if options.get("calibrator_damping", 1) != 1:
        parts.append(f"D{options['calibrator_damping']:g}")
    if options.get("compute_budget") is not None:
        parts.append(f"BUD{options['compute_budget']:g}")
    if options.get("budget_spacing") is not None:
        parts.append(f"SP{options['budget_spacing']:g}")
    if options.get("decision_rule", "residual_diff") != "residual_diff":
        parts.append(options["decision_rule"])
    return " ".join(parts)


# ---------------------------------------------------------------- this project
def _ours(fn: int, bn: int, warmup: int, threshold: float, order: int = 0, mask: str | None = None,
          mcc: int = -1) -> dict[str, Any]:
    options: dict[str, Any] = {"Fn_compute_blocks": fn, "Bn_compute_blocks": bn,
                               "warmup_steps": warmup, "residual_diff_threshold": threshold,
                               "max_continuous_cached_steps": mcc}
    if mask:
        options["steps_computation_mask"] = mask
    if order:
        options.update(enable_taylorseer=True, taylorseer_kwargs={"n_derivatives": order})
    return options


def _ours_dbcache(s: Scale) -> list[dict]:
    """Fn x Bn x thresholds (dense); sparse: the first Fn over all thresholds, the others and one
    Bn over every other threshold. Plus other warmups."""
    if s.dense:
        out = [_ours(fn, bn, 4, t) for fn in s.fn for bn in s.bn for t in s.thresholds]
        warmups = (2, 8)
    else:
        out = [_ours(s.fn[0], s.bn[0], 4, t) for t in s.thresholds]
        out += [_ours(fn, bn, 4, t) for fn, bn in ((s.fn[1], s.bn[0]), (s.fn[0], s.bn[1]))
                for t in s.thresholds[1::2]]
        warmups = (2,)
    return out + [_ours(s.fn[0], s.bn[0], w, t) for w in warmups for t in s.thresholds[1::2]]


def _taylorseer_points(s: Scale) -> list[tuple[int, int, float]]:
    """(order, warmup, threshold) triples swept with a forecaster, shared with cache-dit's grid."""
    if s.dense:
        return [(order, w, t) for order in (1, 2) for w in (2, 4, 8) for t in s.thresholds[1:]]
    return ([(1, 4, t) for t in s.thresholds[1:]] + [(2, 4, t) for t in s.thresholds[1::2]]
            + [(1, 2, t) for t in s.thresholds[2::2]])


def _ours_taylorseer(s: Scale) -> list[dict]:
    return [_ours(s.fn[0], 0, w, t, order) for order, w, t in _taylorseer_points(s)]


def _ours_masks(s: Scale) -> list[dict]:
    thresholds = (s.thresholds[2], STATIC) if s.dense else (STATIC,)
    masks = MASKS if s.dense else MASKS[1:]
    return [_ours(s.fn[0], 0, 0, t, order, mask) for mask in masks for order in (0, 1, 2)
            for t in thresholds]


def _ours_mcc(s: Scale) -> list[dict]:
    thresholds = (s.thresholds[3], s.thresholds[-1]) if s.dense else (s.thresholds[-2],)
    return [_ours(s.fn[0], 0, 4, t, order, mcc=mcc) for mcc in (2, 3) for t in thresholds
            for order in (0, 1)]


def _with(options: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {**options, **extra}


def _ours_calibrators(s: Scale) -> list[dict]:
    """FoCa and Hermite stand-ins at DBCache's decisions."""
    warmups = (2, 4, 8) if s.dense else (4,)
    return [_with(_ours(s.fn[0], 0, w, t), calibrator=cal) for cal in ("foca", "hermite")
            for w in warmups for t in s.thresholds[1:]]


def _ours_budget(s: Scale) -> list[dict]:
    """Compute budgets with plain reuse, TaylorSeer order 1 and FoCa."""
    stand_ins = ({}, {"enable_taylorseer": True, "taylorseer_kwargs": {"n_derivatives": 1}},
                 {"calibrator": "foca"})
    budgets = (0.3, 0.4, 0.5, 0.6, 0.7) if s.dense else (0.3, 0.5, 0.7)
    return [{"Fn_compute_blocks": s.fn[0], "compute_budget": b, **extra}
            for b in budgets for extra in stand_ins]


def _ours_probe_free(s: Scale) -> list[dict]:
    """Fn_compute_blocks=0: no probe block; a budget's layout (``budget_spacing``) or a steps
    mask decides, so a cached step runs no block at all."""
    ts1 = {"enable_taylorseer": True, "taylorseer_kwargs": {"n_derivatives": 1}}
    foca = {"calibrator": "foca"}
    stand_ins: tuple[dict, ...] = (ts1, foca)
    if s.dense:
        stand_ins += ({"enable_taylorseer": True, "taylorseer_kwargs": {"n_derivatives": 2}},
                      {"calibrator": "hermite"})
    # Budgets that land just under the table's columns too (kept = budget rounded to whole
    # steps: 0.58 -> 16/28 = 0.571, 0.68 -> 19/28 = 0.679; 0.6 and 0.7 land above), and on
    # every step count from 4 to 16 of 28 on the dense grids (0.18 -> 5, 0.32 -> 9, 0.43 -> 12),
    # so that a front has no holes a held-out seed could fall into.
    budgets = ((0.15, 0.18, 0.2, 0.25, 0.3, 0.32, 0.35, 0.4, 0.43, 0.45, 0.5, 0.55, 0.58, 0.6, 0.65,
                0.68, 0.7)
               if s.dense else (0.2, 0.3, 0.35, 0.4, 0.45, 0.5, 0.58, 0.68))
    masks = [_with(_ours(0, 0, 0, STATIC, 0, mask), **extra) for mask in MASKS[1:]
             for extra in stand_ins] if s.dense else []
    # Other layouts, where one is used (budgets computing at most 60% of the steps).
    spaced = [{"Fn_compute_blocks": 0, "Bn_compute_blocks": 0, "compute_budget": b,
               "budget_spacing": spacing, **extra} for spacing in (1.0, 2.0) for b in budgets
              if b < 0.6 for extra in (ts1, foca)]
    return [{"Fn_compute_blocks": 0, "Bn_compute_blocks": 0, "compute_budget": b, **extra}
            for b in budgets for extra in stand_ins] + spaced + masks


def _ours_damped(s: Scale) -> list[dict]:
    """The probe-free FoCa budgets with the stand-in damped by 0.9 (``calibrator_damping``), the
    damping ``search_steps`` kept most often on the reference models."""
    return [{**options, "calibrator_damping": 0.9} for options in _ours_probe_free(s)
            if options.get("calibrator") == "foca" and "budget_spacing" not in options
            and "compute_budget" in options]


def _ours_rules(s: Scale) -> list[dict]:
    """Accumulated-change and forecast-aware decisions with TaylorSeer order 1."""
    thresholds = s.thresholds[1:] if s.dense else s.thresholds[1::2]
    return [_with(_ours(s.fn[0], 0, 4, t, 1), decision_rule=rule)
            for rule in ("accumulated", "forecast_error") for t in thresholds]


STEP_SEARCH = Path(__file__).resolve().parent / "results" / "step_search"
SEARCHED = "searched steps (F0)"


def pattern_of(mask: list[int]) -> str:
    """A 0/1 step mask as the ``C.`` pattern the step-search files store (C = computed)."""
    return "".join("C" if v else "." for v in mask)


def searched_options(base: dict[str, Any], pattern: str, damping: float = 1.0) -> dict[str, Any]:
    """``enable_cache`` options of a stored searched mask: its base with the mask deciding, and
    the damping the search kept (files from before the search tried damping have none: 1), as
    ``search_steps`` builds them."""
    from cache_dit import StepSearch  # here: the peers' worker imports this file without our package

    mask = [int(ch == "C") for ch in pattern]
    return StepSearch(base=dict(base), mask=mask, psnr=math.nan, damping=damping).options


def ours_searched(model: str, directory: Path = STEP_SEARCH) -> list[dict]:
    """Masks ``bench_step_search.py`` found on calibration seeds (``<model>.json``), with the
    options they were searched with; none before that benchmark has run."""
    path = directory / f"{model}.json"
    if not path.is_file():
        return []
    data = json.loads(path.read_text())
    return [searched_options(data["base"], level["mask"], level.get("damping", 1.0))
            for _, level in sorted(data["levels"].items(), key=lambda item: int(item[0]))]


OURS_FAMILIES: dict[str, Callable[[Scale], list[dict]]] = {
    "DBCache": _ours_dbcache,
    "DBCache+TaylorSeer": _ours_taylorseer,
    "steps mask": _ours_masks,
    "max continuous cached": _ours_mcc,
    "FoCa / Hermite": _ours_calibrators,
    "compute budget": _ours_budget,
    "decision rules": _ours_rules,
    "probe-free (F0)": _ours_probe_free,
    "damped probe-free (F0)": _ours_damped,
}


def _lean_points(s: Scale) -> list[tuple[str, int, float, int, str | None]]:
    """(family, warmup, threshold, forecaster order, mask) of the lean grid: the knobs that made
    the frontier in denser sweeps, for models whose runs are expensive (medium FLUX)."""
    t = s.thresholds
    gap = round((t[1] + t[2]) / 2, 4)  # on medium FLUX kept jumps from ~0.8 to ~0.4 between t[1], t[2]
    return ([(f, 4, gap, order, None) for f, order in
             (("DBCache", 0), ("DBCache+TaylorSeer", 1), ("DBCache+TaylorSeer", 2))]
            + [("DBCache", 4, x, 0, None) for x in (t[1], t[3], t[5])]
            + [("DBCache+TaylorSeer", 4, x, 1, None) for x in t[1:]]
            + [("DBCache+TaylorSeer", 4, x, 2, None) for x in (t[2], t[4])]
            + [("steps mask", 0, STATIC, 1, m) for m in MASKS[1:]] + [("steps mask", 0, STATIC, 0, "fast")])


def ours_grid(model: str, quick: bool = False, lean: bool = False) -> Grid:
    """Named ``enable_cache`` option dicts of this project for ``model`` (``lean``: ~16 points)."""
    s = scale_of(model)
    if lean and not quick:
        return ([(f, _ours(s.fn[0], 0, w, t, order, mask)) for f, w, t, order, mask in _lean_points(s)]
                + [("DBCache", _ours(s.fn[1], 0, 4, s.thresholds[3])),
                   ("max continuous cached", _ours(s.fn[0], 0, 4, s.thresholds[-2], 1, mcc=2))]
                + [("FoCa / Hermite", _with(_ours(s.fn[0], 0, 4, t), calibrator="foca"))
                   for t in (s.thresholds[1], s.thresholds[3], s.thresholds[4])]
                + [("compute budget", options) for options in _ours_budget(s)
                   if options.get("enable_taylorseer") or options.get("calibrator")]
                + [("probe-free (F0)", options) for options in _ours_probe_free(s)]
                + [("damped probe-free (F0)", options) for options in _ours_damped(s)]
                + [(SEARCHED, options) for options in ours_searched(model)])
    if quick:
        return [("DBCache", _ours(1, 0, 2, 0.12)), ("DBCache+TaylorSeer", _ours(1, 0, 2, 0.16, 1)),
                ("steps mask", _ours(1, 0, 0, STATIC, 0, "fast"))]
    return ([(family, options) for family, make in OURS_FAMILIES.items() for options in make(s)]
            + [(SEARCHED, options) for options in ours_searched(model)])


# ---------------------------------------------------------------- cache-dit 1.5.3
def _peer(fn: int, bn: int, warmup: int, threshold: float, calibrator: str | None = None,
          mask: str | None = None, mcc: int = -1) -> dict[str, Any]:
    """Spec for the worker: DBCacheConfig fields, a steps_mask policy, a calibrator name
    (``taylorseer1``/``taylorseer2``/``foca``/``dmd``/None)."""
    return {"Fn": fn, "Bn": bn, "warmup": warmup, "threshold": threshold, "mask": mask,
            "mcc": mcc, "calibrator": calibrator}


def cachedit_grid(model: str, quick: bool = False, lean: bool = False) -> Grid:
    """Named specs for cache-dit 1.5.3's DBCacheConfig + calibrator configs."""
    s = scale_of(model)
    if lean and not quick:
        return ([(f, _peer(s.fn[0], 0, w, t, f"taylorseer{order}" if order else None, mask))
                 for f, w, t, order, mask in _lean_points(s)]
                + [("DBCache", _peer(s.fn[1], 0, 4, s.thresholds[3])),
                   ("max continuous cached", _peer(s.fn[0], 0, 4, s.thresholds[-2], "taylorseer1", mcc=2))]
                + [(f"DBCache+{c}", _peer(s.fn[0], 0, 4, t, c)) for c in ("foca", "dmd")
                   for t in (s.thresholds[2], s.thresholds[4])])
    if quick:
        return [("DBCache", _peer(1, 0, 2, 0.12)), ("DBCache+TaylorSeer", _peer(1, 0, 2, 0.16, "taylorseer1")),
                ("steps mask", _peer(1, 0, 0, STATIC, None, "fast"))]
    out: Grid = []
    for o in _ours_dbcache(s):
        out.append(("DBCache", _peer(o["Fn_compute_blocks"], o["Bn_compute_blocks"], o["warmup_steps"],
                                     o["residual_diff_threshold"])))
    out += [("DBCache+TaylorSeer", _peer(s.fn[0], 0, w, t, f"taylorseer{order}"))
            for order, w, t in _taylorseer_points(s)]
    for calibrator in ("foca", "dmd"):
        out += [(f"DBCache+{calibrator}", _peer(s.fn[0], 0, 4, t, calibrator))
                for t in (s.thresholds[1:] if s.dense else s.thresholds[1::2])]
    thresholds = (s.thresholds[2], STATIC) if s.dense else (STATIC,)
    for mask in (MASKS if s.dense else MASKS[1:]):
        out += [("steps mask", _peer(s.fn[0], 0, 0, t, c, mask)) for c in (None, "taylorseer1", "taylorseer2")
                for t in thresholds]
    thresholds = (s.thresholds[3], s.thresholds[-1]) if s.dense else (s.thresholds[-2],)
    out += [("max continuous cached", _peer(s.fn[0], 0, 4, t, c, mcc=mcc)) for mcc in (2, 3)
            for t in thresholds for c in (None, "taylorseer1")]
    return out


# ---------------------------------------------------------------- diffusers hooks
def diffusers_grid(model: str, quick: bool = False, lean: bool = False) -> Grid:
    """Named specs: ``{"kind": "fbcache"|"taylorseer"|"magcache", ...config fields}``."""
    s = scale_of(model)
    if lean and not quick:
        return ([("FirstBlockCache", {"kind": "fbcache", "threshold": t})
                 for t in (*s.fbcache_thresholds[1::2], s.fbcache_thresholds[4])]
                + [("TaylorSeerCache", {"kind": "taylorseer", "cache_interval": n, "max_order": o,
                                        "disable_cache_before_step": 3}) for n, o in ((2, 1), (3, 1), (4, 1), (6, 1), (3, 2))]
                + [("MagCache", {"kind": "magcache", "threshold": t, "max_skip_steps": 3,
                                 "retention_ratio": 0.2}) for t in (0.02, 0.04, 0.12, 0.24)])
    if quick:
        return [("FirstBlockCache", {"kind": "fbcache", "threshold": s.fbcache_thresholds[3]}),
                ("TaylorSeerCache", {"kind": "taylorseer", "cache_interval": 3, "max_order": 1,
                                     "disable_cache_before_step": 3}),
                ("MagCache", {"kind": "magcache", "threshold": 0.08, "max_skip_steps": 3,
                              "retention_ratio": 0.2})]
    out: Grid = [("FirstBlockCache", {"kind": "fbcache", "threshold": t}) for t in s.fbcache_thresholds]
    intervals = (2, 3, 4, 5, 6) if s.dense else (2, 3, 4, 6)
    befores = (3, 5) if s.dense else (3,)
    out += [("TaylorSeerCache", {"kind": "taylorseer", "cache_interval": n, "max_order": order,
                                 "disable_cache_before_step": before})
            for n in intervals for order in (1, 2) for before in befores]
    if not s.dense:
        out += [("TaylorSeerCache", {"kind": "taylorseer", "cache_interval": n, "max_order": 1,
                                     "disable_cache_before_step": 5}) for n in (3, 4)]
    mag = (0.02, 0.04, 0.08, 0.16, 0.32) if s.dense else (0.02, 0.06, 0.12, 0.24)
    skips = (2, 3, 5) if s.dense else (2, 4)
    out += [("MagCache", {"kind": "magcache", "threshold": t, "max_skip_steps": k,
                          "retention_ratio": 0.2}) for t in mag for k in skips]
    if s.dense:
        out += [("MagCache", {"kind": "magcache", "threshold": 0.08, "max_skip_steps": 3,
                              "retention_ratio": r}) for r in (0.1, 0.3)]
    return out


def knob_string(options: dict[str, Any]) -> str:
    """Knobs of any library's dict as one short string (for the CSV and logs)."""
    if "kind" in options:
        return " ".join(f"{k}={v}" for k, v in options.items() if k != "kind")
    return _name(options)
