"""Named configurations chosen from the frontier benchmark (benchmarks/results/frontier/).

Each is the configuration of this project that did best at its kept compute on the two trained
reference models (28 steps, CFG 2.5): a compute budget with no probe block
(``Fn_compute_blocks=0``) and the FoCa stand-in. A budget makes the name a promise on any model:
"fast" keeps 30% of the block executions of every generation (rounded to whole steps).

    cache_dit.enable_cache(pipe, **cache_dit.preset("balanced"))
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Any, Mapping

__all__ = ["PRESETS", "preset"]

PRESETS: Mapping[str, Mapping[str, Any]] = MappingProxyType({
    # frontier, seed 0: 71% of the block executions kept; PSNR vs uncached: reference model
    # 54.6 dB, deep reference 55.5, medium FLUX 83.9 (budgets above 60% keep the head and even
    # shares; below, the computes are crowded early, see cache_dit.rules.budget)
    "quality": MappingProxyType(dict(Fn_compute_blocks=0, Bn_compute_blocks=0,
                                     compute_budget=0.7, calibrator="foca")),
    # 50% kept: 47.5 / 48.2 / 76.3 dB
    "balanced": MappingProxyType(dict(Fn_compute_blocks=0, Bn_compute_blocks=0,
                                      compute_budget=0.5, calibrator="foca")),
    # 29% kept: 34.4 / 38.0 / 75.7 dB
    "fast": MappingProxyType(dict(Fn_compute_blocks=0, Bn_compute_blocks=0,
                                  compute_budget=0.3, calibrator="foca")),
})


def preset(name: str) -> dict[str, Any]:
    """The options of a named preset, as a fresh dict for ``enable_cache(pipe, **options)``."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; allowed: {list(PRESETS)}")
    return dict(PRESETS[name])
