"""Benchmark configurations: compact strings like ``F1B0_R0.08_T1O2`` or YAML files.

A config string is a ``_``-separated list of tokens, each one DBCache option:

    F<n>B<m>   Fn_compute_blocks=n, Bn_compute_blocks=m       (required)
    R<x>       residual_diff_threshold=x                      (default 0.12)
    W<n>       warmup_steps=n                                 (default 8)
    MC<n>      max_cached_steps=n
    MCC<n>     max_continuous_cached_steps=n
    T<0|1>O<m> TaylorSeer on/off with order m (hidden and encoder stream)
    CFG<0|1>   do_separate_classifier_free_guidance
    M<preset>  steps_computation_mask preset (slow/medium/fast/ultra)

A leading ``DBCache_`` is accepted, so the tag that ``summary()`` prints parses back.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from ..options import CacheOptions

__all__ = ["BenchConfig", "parse_config", "load_configs"]

_TOKENS: list[tuple[re.Pattern, Any]] = [
    (re.compile(r"F(\d+)B(\d+)"), lambda m: {"Fn_compute_blocks": int(m[1]),
                                             "Bn_compute_blocks": int(m[2])}),
    (re.compile(r"R(\d*\.?\d+(?:e[+-]?\d+)?)"), lambda m: {"residual_diff_threshold": float(m[1])}),
    (re.compile(r"W(\d+)"), lambda m: {"warmup_steps": int(m[1])}),
    (re.compile(r"MCC(-?\d+)"), lambda m: {"max_continuous_cached_steps": int(m[1])}),
    (re.compile(r"MC(-?\d+)"), lambda m: {"max_cached_steps": int(m[1])}),
    (re.compile(r"T([01])O(\d+)"), lambda m: {"enable_taylorseer": m[1] == "1",
                                             "enable_encoder_taylorseer": m[1] == "1",
                                             "taylorseer_kwargs": {"n_derivatives": int(m[2])}}),
    (re.compile(r"CFG([01])"), lambda m: {"do_separate_classifier_free_guidance": m[1] == "1"}),
    (re.compile(r"M(slow|medium|fast|ultra)"), lambda m: {"steps_computation_mask": m[1]}),
]


@dataclass
class BenchConfig:
    """One cached configuration to benchmark."""

    name: str
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def tag(self) -> str:
        return CacheOptions.from_kwargs(self.options).tag()


def parse_config(text: str) -> BenchConfig:
    """Parse ``F1B0_R0.08_T1O2``-style strings; a bad token raises ValueError naming it."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"config string must be non-empty, got {text!r}")
    tokens = text.strip().split("_")
    if tokens[0] == "DBCache":
        tokens = tokens[1:]
    options: dict[str, Any] = {}
    for token in tokens:
        for pattern, convert in _TOKENS:
            match = pattern.fullmatch(token)
            if match:
                options.update(convert(match))
                break
        else:
            raise ValueError(
                f"config {text!r}: token {token!r} is not understood; tokens are F<n>B<m>, R<x>, "
                f"W<n>, MC<n>, MCC<n>, T<0|1>O<m>, CFG<0|1>, M<slow|medium|fast|ultra>"
            )
    if "Fn_compute_blocks" not in options:
        raise ValueError(f"config {text!r} needs an F<n>B<m> token (e.g. F1B0)")
    CacheOptions.from_kwargs(options)  # validate now, with the option's own message
    return BenchConfig(text.strip(), options)


def load_configs(path: str) -> list[BenchConfig]:
    """A YAML file holding either a list of config strings / option mappings, or a mapping of
    name -> options mapping."""
    import yaml

    with open(path, encoding="utf-8") as handle:
        data = yaml.safe_load(handle)
    if isinstance(data, dict):
        items = list(data.items())
    elif isinstance(data, list):
        items = [(None, entry) for entry in data]
    else:
        raise ValueError(f"{path}: expected a list or mapping of configs, got {type(data).__name__}")
    configs = []
    for name, entry in items:
        if isinstance(entry, str):
            config = parse_config(entry)
            configs.append(BenchConfig(name or config.name, config.options))
        elif isinstance(entry, dict):
            options = CacheOptions.from_kwargs(entry)
            chosen = {key: getattr(options, key) for key in entry}
            configs.append(BenchConfig(name or options.tag(), chosen))
        else:
            raise ValueError(f"{path}: config {entry!r} must be a string or a mapping of options")
    return configs

