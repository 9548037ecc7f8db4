"""Benchmark configurations: tags like ``F1B0_R0.08_T1O2`` or YAML files.

A config string is a cache tag (see :mod:`cache_dit.tags`): every tag ``summary()`` prints parses
back, and the short forms (``T1O2`` for both TaylorSeer streams, no leading ``DBCache_``) are
accepted. Settings a string does not name keep their defaults (R0.12, W8, ...).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..options import CacheOptions
from ..tags import tag_options

__all__ = ["BenchConfig", "parse_config", "load_configs"]


@dataclass
class BenchConfig:
    """One cached configuration to benchmark."""

    name: str
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def tag(self) -> str:
        return CacheOptions.from_kwargs(self.options).tag()


def parse_config(text: str) -> BenchConfig:
    """Parse a tag such as ``F1B0_R0.08_T1O2``; a bad token raises ValueError naming it."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"config string must be non-empty, got {text!r}")
    options = tag_options(text)
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

