"""diffusers' own cache hooks as frontier-benchmark methods (FirstBlockCache, TaylorSeerCache, MagCache).

Each is switched on with ``transformer.enable_cache(config)`` and off with
``transformer.disable_cache()``. TaylorSeerCache is pointed at whole blocks (every block of both
lists forecasts its outputs), not at diffusers' default of attention modules only: the x axis
counts block executions, and a block whose feed-forward still runs is not skipped. Its factors are
kept in float32 (diffusers' default bfloat16 only saves memory, which CPU runs do not need).
MagCache needs per-model magnitude ratios: they are calibrated with diffusers' own
``calibrate=True`` mode on a seed that is never evaluated.
"""

from __future__ import annotations

import ast
import contextlib
import io
from typing import Any, Callable

import torch
from diffusers.hooks import FirstBlockCacheConfig, MagCacheConfig, TaylorSeerCacheConfig

from frontier_common import Method
from frontier_grids import knob_string

LIBRARY = "diffusers"
BLOCK_PATTERNS = [r"transformer_blocks\.\d+", r"single_transformer_blocks\.\d+"]


def calibrate_mag_ratios(model: Any, seed: int) -> list[float]:
    """Per-step residual magnitude ratios from one uncached-equivalent run of ``seed``.

    diffusers prints one list per cache context (cond, uncond) at the end of the run; with CFG the
    two are averaged step by step, since MagCacheConfig takes one list for all contexts."""
    transformer = model.transformer
    transformer.enable_cache(MagCacheConfig(calibrate=True, num_inference_steps=model.steps))
    printed = io.StringIO()
    try:
        with contextlib.redirect_stdout(printed):
            model.generate(seed)
    finally:
        transformer.disable_cache()
    lists = [ast.literal_eval(line) for line in printed.getvalue().splitlines()
             if line.startswith("[") and line.endswith("]")]
    if not lists or any(len(ratios) != model.steps for ratios in lists):
        raise RuntimeError(f"MagCache calibration on {model.name} printed {len(lists)} lists, "
                           f"expected lists of {model.steps} ratios")
    return [sum(values) / len(values) for values in zip(*lists)]


def _config(spec: dict, steps: int, mag_ratios: list[float] | None) -> Any:
    kind = spec["kind"]
    if kind == "fbcache":
        return FirstBlockCacheConfig(threshold=spec["threshold"])
    if kind == "taylorseer":
        return TaylorSeerCacheConfig(
            cache_interval=spec["cache_interval"], max_order=spec["max_order"],
            disable_cache_before_step=spec["disable_cache_before_step"],
            taylor_factors_dtype=torch.float32, cache_identifiers=BLOCK_PATTERNS)
    if kind == "magcache":
        if mag_ratios is None:
            raise ValueError("MagCache needs calibrated mag_ratios")
        return MagCacheConfig(threshold=spec["threshold"], max_skip_steps=spec["max_skip_steps"],
                              retention_ratio=spec["retention_ratio"], num_inference_steps=steps,
                              mag_ratios=list(mag_ratios))
    raise ValueError(f"unknown diffusers cache kind {kind!r}; allowed: fbcache, taylorseer, magcache")


def methods(model: Any, grid: list[tuple[str, dict]], calibration_seed: int,
            log: Callable[[str], None] = print) -> list[Method]:
    """One Method per grid entry; MagCache entries share one calibration on ``calibration_seed``."""
    mag_ratios = None
    if any(spec["kind"] == "magcache" for _, spec in grid):
        mag_ratios = calibrate_mag_ratios(model, calibration_seed)
        log(f"  MagCache ratios from seed {calibration_seed}: "
            + ", ".join(f"{r:.3f}" for r in mag_ratios))
    transformer = model.transformer

    def make(method: str, spec: dict) -> Method:
        config = _config(spec, model.steps, mag_ratios)  # bad specs fail before any run
        return Method(LIBRARY, method, knob_string(spec), lambda: transformer.enable_cache(config),
                      transformer.disable_cache)

    return [make(method, spec) for method, spec in grid]
