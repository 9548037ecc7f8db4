"""One-call calibration: the options that hit a compute target with the best quality on the
user's own calls.

    result = cache_dit.calibrate(pipe, calls=[dict(prompt="a cat", num_inference_steps=28)],
                                 target=0.5, save="cache.yaml")
    cache_dit.enable_cache(pipe, **result.options)  # or **cache_dit.load_options("cache.yaml")

Each call runs once uncached, then once per candidate configuration; every candidate is a
:mod:`compute budget <cache_dit.rules.budget>` at ``target``, so all of them keep the asked
compute, and the one closest to the uncached outputs (mean PSNR) wins.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from .api import _session_of, disable_cache, enable_cache, summary
from .options import CacheOptions

__all__ = ["calibrate", "save_options", "Calibration", "DEFAULT_CANDIDATES"]

# Probe depth x stand-in, and the probe-free layouts: what the budget is spent on.
DEFAULT_CANDIDATES: tuple[Mapping[str, Any], ...] = (
    {"Fn_compute_blocks": 1},
    {"Fn_compute_blocks": 2},
    {"Fn_compute_blocks": 1, "enable_taylorseer": True, "taylorseer_kwargs": {"n_derivatives": 1}},
    {"Fn_compute_blocks": 1, "enable_taylorseer": True, "taylorseer_kwargs": {"n_derivatives": 2}},
    {"Fn_compute_blocks": 1, "Bn_compute_blocks": 1},
    {"Fn_compute_blocks": 1, "calibrator": "foca"},
    # No probe: how the computes are laid out depends on the model (rules/budget.py).
    {"Fn_compute_blocks": 0, "Bn_compute_blocks": 0, "calibrator": "foca", "budget_spacing": 1.0},
    {"Fn_compute_blocks": 0, "Bn_compute_blocks": 0, "calibrator": "foca", "budget_spacing": 1.5},
    {"Fn_compute_blocks": 0, "Bn_compute_blocks": 0, "calibrator": "foca", "budget_spacing": 2.0},
)


@dataclass
class Calibration:
    """The chosen options and what every candidate measured."""

    options: dict[str, Any]
    psnr: float  # mean PSNR of the chosen options against the uncached calls
    report: list[dict[str, Any]] = field(default_factory=list)  # options, psnr, kept per candidate


def _as_array(output: Any) -> np.ndarray:
    """The images / frames / latents of a pipeline output as one float array."""
    for name in ("images", "frames", "audios"):
        if hasattr(output, name):
            output = getattr(output, name)
            break
    if isinstance(output, (tuple, list)) and output and not isinstance(output[0], (int, float)):
        return np.stack([_as_array(item) for item in output])
    if isinstance(output, torch.Tensor):
        return output.detach().float().cpu().numpy()
    return np.asarray(output, dtype=np.float64)


def _psnr(reference: np.ndarray, test: np.ndarray) -> float:
    """PSNR over the reference's own value range (images in [0, 1] or [0, 255], latents)."""
    peak = float(np.max(reference) - np.min(reference)) or 1.0
    mse = float(np.mean((reference.astype(np.float64) - test.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * math.log10(peak * peak / mse)


class _Replay:
    """Runs the user's calls with the same random state every time."""

    def __init__(self, pipe: Any, calls: Sequence[Mapping[str, Any]]) -> None:
        self.pipe = pipe
        self.calls = [dict(call) for call in calls]
        self.states = []
        for call in self.calls:
            generator = call.get("generator")
            if isinstance(generator, (list, tuple)):
                self.states.append([g.get_state() for g in generator])
            elif isinstance(generator, torch.Generator):
                self.states.append(generator.get_state())
            else:
                self.states.append(None)

    def run(self) -> list[np.ndarray]:
        return [self.run_one(index) for index in range(len(self.calls))]

    def run_one(self, index: int) -> np.ndarray:
        """Call ``index`` from its recorded random state, and leave its generator in that state
        (the user's calls stay as given: a second search on them sees the same noise)."""
        call, state = self.calls[index], self.states[index]
        generator = call.get("generator")
        if state is None:
            generator = torch.Generator().manual_seed(index)
        self._set_state(generator, state)
        try:
            with torch.no_grad():
                return _as_array(self.pipe(**{**call, "generator": generator}))
        finally:
            self._set_state(generator, state)

    @staticmethod
    def _set_state(generator: Any, state: Any) -> None:
        if state is None:
            return
        if isinstance(generator, (list, tuple)):
            for g, s in zip(generator, state):
                g.set_state(s)
        else:
            generator.set_state(state)


def calibrate(
    pipe: Any,
    calls: Sequence[Mapping[str, Any]],
    target: float,
    candidates: Sequence[Mapping[str, Any]] | None = None,
    save: str | os.PathLike | None = None,
) -> Calibration:
    """The cache options that keep ``target`` of the block executions with the best quality.

    Args:
        pipe: an uncached diffusers pipeline.
        calls: keyword arguments of one or a few pipeline calls, as the user will make them
            (prompts, step counts, guidance; a ``generator`` is replayed from its state, else seeded).
        target: the fraction of block executions to keep, in (0, 1].
        candidates: option dicts to try at that budget (default :data:`DEFAULT_CANDIDATES`).
        save: write the chosen options as YAML here (read back with ``load_options``).

    Returns:
        :class:`Calibration`: the chosen options (``compute_budget`` included), their mean PSNR
        against the uncached outputs, and every candidate's PSNR and kept fraction.

    The pipeline is left uncached.
    """
    if _session_of(pipe) is not None:
        raise ValueError("calibrate needs an uncached pipeline: call cache_dit.disable_cache first")
    if not calls or isinstance(calls, Mapping):
        raise ValueError(f"calls must be a non-empty list of keyword-argument dicts, got {calls!r}")
    for i, call in enumerate(calls):
        if not isinstance(call, Mapping):
            raise TypeError(f"calls[{i}] must be a dict of pipeline keyword arguments, got {call!r}")
    CacheOptions(compute_budget=target)  # validates target, naming it
    candidates = list(DEFAULT_CANDIDATES if candidates is None else candidates)
    if not candidates:
        raise ValueError("candidates must hold at least one option dict")
    replay = _Replay(pipe, calls)
    reference = replay.run()
    report = []
    best: tuple[float, dict[str, Any]] | None = None
    for candidate in candidates:
        options = {**candidate, "compute_budget": target}
        enable_cache(pipe, **options)
        try:
            outputs = replay.run()
            kept = [item.kept_fraction for item in summary(pipe)]
        finally:
            disable_cache(pipe)
        quality = float(np.mean([_psnr(r, o) for r, o in zip(reference, outputs)]))
        report.append({"options": options, "psnr": quality, "kept": kept})
        if best is None or quality > best[0]:
            best = (quality, options)
    quality, chosen = best
    if save is not None:
        save_options(chosen, save)
    return Calibration(dict(chosen), quality, report)


def save_options(options: Mapping[str, Any], path: str | os.PathLike) -> None:
    """Write options as YAML that :func:`cache_dit.load_options` reads back (validated first)."""
    import yaml

    validated = CacheOptions.from_kwargs(dict(options))
    data = {name: getattr(validated, name) for name in options}
    data = {k: (str(v) if k == "cache_type" else v) for k, v in data.items()}
    with open(path, "w", encoding="utf-8") as handle:
        yaml.safe_dump(data, handle, sort_keys=True)
