"""Named configurations chosen from the frontier benchmark (benchmarks/results/frontier/).

Each is the configuration of this project that did best at its kept compute on the two trained
reference models (28 steps, CFG 2.5): a compute budget with no probe block
(``Fn_compute_blocks=0``) and the FoCa stand-in, damped by 0.9 from 50% kept up (damping costs
0.3-0.8 dB at 30%). A budget makes the name a promise on any model:
"fast" keeps 30% of the block executions of every generation (rounded to whole steps).

    cache_dit.enable_cache(pipe, **cache_dit.preset("balanced"))
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Any, Mapping

__all__ = ["PRESETS", "preset"]

PRESETS: Mapping[str, Mapping[str, Any]] = MappingProxyType({
    # frontier, seed 0: 71% of the block executions kept; PSNR vs uncached: reference model
    # 55.2 dB, deep reference 56.1, medium FLUX 83.9 (undamped 54.6 / 55.5 / 83.9; budgets above
    # 60% keep the head and even shares; below, the computes are crowded early, see
    # cache_dit.rules.budget)
    "quality": MappingProxyType(dict(Fn_compute_blocks=0, Bn_compute_blocks=0,
                                     compute_budget=0.7, calibrator="foca", calibrator_damping=0.9)),
    # 50% kept: 48.7 / 48.4 / 76.5 dB (undamped 47.5 / 48.2 / 76.3)
    "balanced": MappingProxyType(dict(Fn_compute_blocks=0, Bn_compute_blocks=0,
                                      compute_budget=0.5, calibrator="foca", calibrator_damping=0.9)),
    # 29% kept: 34.4 / 38.0 / 75.7 dB
    "fast": MappingProxyType(dict(Fn_compute_blocks=0, Bn_compute_blocks=0,
                                  compute_budget=0.3, calibrator="foca")),
})


def preset(name: str) -> dict[str, Any]:
    """The options of a named preset, as a fresh dict for ``enable_cache(pipe, **options)``."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; allowed: {list(PRESETS)}")
    return dict(PRESETS[name])
