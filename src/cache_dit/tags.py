"""The tag codec: ``CacheOptions`` <-> ``DBCache_F8B0_W8_MC-1_R0.12[...]``.

A tag names every setting that differs from the defaults, so two configurations that run alike
carry the same tag and any tag parses back to the options that made it (``summary()`` prints tags,
``cache-dit-bench --config`` reads them). Tokens, ``_``-separated, in any order when parsing:

    <cache_type>   DBCache                                   (first, optional when parsing)
    F<n>B<m>       Fn_compute_blocks, Bn_compute_blocks
    W<n>           warmup_steps
    MC<n>          max_cached_steps
    R<x>           residual_diff_threshold
    BnIds<i-j-..>  Bn_compute_blocks_ids (``BnIds`` alone: the empty list)
    NR<x>          non_compute_blocks_diff_threshold
    MCC<n>         max_continuous_cached_steps
    M<preset>      steps_computation_mask preset (slow/medium/fast/ultra)
    M<bits>        steps_computation_mask as a 0/1 list, e.g. ``M1110001``
    T<a>E<b>O<m>[H] enable_taylorseer=a, enable_encoder_taylorseer=b, order m, H: hidden_states
    T<a>O<m>[H]    short form: both streams a
    CFG<0|1>       do_separate_classifier_free_guidance
    CFGD0          cfg_diff_compute_separate=False
    CF1            cfg_compute_first=True
    N<n>           num_inference_steps
    BUD<x>         compute_budget
    SP<x>          budget_spacing
    ACC / FE       decision_rule accumulated / forecast_error
    PS             per_sample_decisions
    C<name>        calibrator (reuse/taylorseer/newton/foca/hermite)
    D<x>           calibrator_damping
"""

from __future__ import annotations

import re
from typing import Any, Callable

from .options import STEPS_MASK_PRESETS, CacheOptions, CacheType

__all__ = ["format_tag", "parse_tag", "tag_options"]

_DEFAULTS = CacheOptions()
_NUMBER = r"(-?\d*\.?\d+(?:e[+-]?\d+)?|inf)"


def _num(value: float) -> str:
    """Shortest text that reads back as exactly ``value`` (``0.12``, not ``0.12000000000000001``)."""
    short = f"{value:g}"
    return short if float(short) == value else repr(float(value))


def format_tag(options: CacheOptions) -> str:
    """The tag of ``options``: every non-default setting, in a fixed order."""
    o, d = options, _DEFAULTS
    parts = [str(o.cache_type), f"F{o.Fn_compute_blocks}B{o.Bn_compute_blocks}", f"W{o.warmup_steps}"]
    if o.compute_budget is None:
        parts += [f"MC{o.max_cached_steps}", f"R{_num(o.residual_diff_threshold)}"]
    else:  # the budget sets how many steps are cached: no threshold, no cap
        parts.append(f"BUD{_num(o.compute_budget)}")
    if o.budget_spacing is not None:
        parts.append(f"SP{_num(o.budget_spacing)}")
    if o.Bn_compute_blocks_ids is not None:
        parts.append("BnIds" + "-".join(str(i) for i in o.Bn_compute_blocks_ids))
    if o.Bn_compute_blocks_ids is not None or (
            o.non_compute_blocks_diff_threshold != d.non_compute_blocks_diff_threshold):
        parts.append(f"NR{_num(o.non_compute_blocks_diff_threshold)}")
    if o.max_continuous_cached_steps != d.max_continuous_cached_steps:
        parts.append(f"MCC{o.max_continuous_cached_steps}")
    mask = o.steps_computation_mask
    if mask is not None:
        parts.append(f"M{mask}" if isinstance(mask, str) else "M" + "".join(map(str, mask)))
    if (o.enable_taylorseer or o.enable_encoder_taylorseer or o.taylorseer_order != 2
            or o.taylorseer_cache_type != "residual"):
        kind = "" if o.taylorseer_cache_type == "residual" else "H"
        parts.append(f"T{int(o.enable_taylorseer)}E{int(o.enable_encoder_taylorseer)}"
                     f"O{o.taylorseer_order}{kind}")
    if o.do_separate_classifier_free_guidance is not None:
        parts.append(f"CFG{int(o.do_separate_classifier_free_guidance)}")
    if not o.cfg_diff_compute_separate:
        parts.append("CFGD0")
    if o.cfg_compute_first:
        parts.append("CF1")
    if o.num_inference_steps is not None:
        parts.append(f"N{o.num_inference_steps}")
    if o.decision_rule != d.decision_rule:
        parts.append(_RULE_TOKENS[o.decision_rule])
    if o.per_sample_decisions:
        parts.append("PS")
    if o.calibrator is not None:
        parts.append(f"C{o.calibrator}")
    if o.calibrator_damping != d.calibrator_damping:
        parts.append(f"D{_num(o.calibrator_damping)}")
    return "_".join(parts)


def _taylor(m: re.Match) -> dict[str, Any]:
    encoder = m[2] if m[2] is not None else m[1]
    options = {"enable_taylorseer": m[1] == "1", "enable_encoder_taylorseer": encoder == "1",
               "taylorseer_kwargs": {"n_derivatives": int(m[3])}}
    if m[4]:
        options["taylorseer_cache_type"] = "hidden_states"
    return options


_PRESETS = "|".join(STEPS_MASK_PRESETS)
_RULE_TOKENS = {"accumulated": "ACC", "forecast_error": "FE"}
# Longer prefixes first: MCC before MC before M, CFGD before CFG, BnIds before B.
_TOKENS: list[tuple[re.Pattern, Callable[[re.Match], dict[str, Any]]]] = [
    (re.compile(r"F(\d+)B(\d+)"), lambda m: {"Fn_compute_blocks": int(m[1]),
                                             "Bn_compute_blocks": int(m[2])}),
    (re.compile(r"BnIds((?:\d+(?:-\d+)*)?)"),
     lambda m: {"Bn_compute_blocks_ids": [int(i) for i in m[1].split("-")] if m[1] else []}),
    (re.compile(r"NR" + _NUMBER), lambda m: {"non_compute_blocks_diff_threshold": float(m[1])}),
    (re.compile(r"R" + _NUMBER), lambda m: {"residual_diff_threshold": float(m[1])}),
    (re.compile(r"W(\d+)"), lambda m: {"warmup_steps": int(m[1])}),
    (re.compile(r"MCC(-?\d+)"), lambda m: {"max_continuous_cached_steps": int(m[1])}),
    (re.compile(r"MC(-?\d+)"), lambda m: {"max_cached_steps": int(m[1])}),
    (re.compile(rf"M({_PRESETS})"), lambda m: {"steps_computation_mask": m[1]}),
    (re.compile(r"M([01]+)"), lambda m: {"steps_computation_mask": [int(c) for c in m[1]]}),
    (re.compile(r"T([01])(?:E([01]))?O(\d+)(H?)"), _taylor),
    (re.compile(r"CFGD0"), lambda m: {"cfg_diff_compute_separate": False}),
    (re.compile(r"CFG([01])"), lambda m: {"do_separate_classifier_free_guidance": m[1] == "1"}),
    (re.compile(r"CF1"), lambda m: {"cfg_compute_first": True}),
    (re.compile(r"N(\d+)"), lambda m: {"num_inference_steps": int(m[1])}),
    (re.compile(r"BUD" + _NUMBER), lambda m: {"compute_budget": float(m[1])}),
    (re.compile(r"SP" + _NUMBER), lambda m: {"budget_spacing": float(m[1])}),
    (re.compile(r"ACC"), lambda m: {"decision_rule": "accumulated"}),
    (re.compile(r"FE"), lambda m: {"decision_rule": "forecast_error"}),
    (re.compile(r"PS"), lambda m: {"per_sample_decisions": True}),
    (re.compile(r"C(reuse|taylorseer|newton|foca|hermite)"), lambda m: {"calibrator": m[1]}),
    (re.compile(r"D" + _NUMBER), lambda m: {"calibrator_damping": float(m[1])}),
]
_TOKEN_HELP = ("F<n>B<m>, W<n>, MC<n>, R<x>, BnIds<i-j>, NR<x>, MCC<n>, M<preset|bits>, "
               "T<0|1>[E<0|1>]O<m>[H], CFG<0|1>, CFGD0, CF1, N<n>, BUD<x>, SP<x>, ACC, FE, PS, C<calibrator>, D<x>")


def tag_options(tag: str) -> dict[str, Any]:
    """The options a tag names, as keyword options (only those the tag mentions)."""
    if not isinstance(tag, str) or not tag.strip():
        raise ValueError(f"a cache tag must be a non-empty string, got {tag!r}")
    tokens = tag.strip().split("_")
    options: dict[str, Any] = {}
    cache_types = {member.value.lower(): member for member in CacheType}
    if tokens[0].lower() in cache_types:
        options["cache_type"] = cache_types[tokens.pop(0).lower()]
    for token in tokens:
        for pattern, convert in _TOKENS:
            match = pattern.fullmatch(token)
            if match:
                options.update(convert(match))
                break
        else:
            raise ValueError(f"tag {tag!r}: token {token!r} is not understood; tokens are "
                             f"{_TOKEN_HELP}")
    return options


def parse_tag(tag: str) -> CacheOptions:
    """``CacheOptions`` from a tag; unnamed settings keep their defaults. Validated."""
    return CacheOptions.from_kwargs(tag_options(tag))
