"""What both sides of the frontier benchmark share: the models, the block-execution counter, the sweep.

Imported by ``bench_frontier.py`` (in ``.venv``, next to our ``cache_dit``) and by
``frontier_peers_worker.py`` (in ``.venv-peers``, where ``cache_dit`` is cache-dit 1.5.3 from PyPI).
So this module imports nothing from our package: in the peers process our reference pipeline and
model builders are loaded from their files under other module names (``via_path=True``).
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import inspect
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
PACKAGE_DIR = REPO / "src" / "cache_dit"
MODEL_NAMES = ("reference", "medium-flux", "deep-reference")
BLOCK_LISTS = ("transformer_blocks", "single_transformer_blocks")
GUIDANCE = 2.5  # the reference model's default CFG scale


class ModelUnavailable(RuntimeError):
    """A model of the list cannot be built here (e.g. the deep reference's weights are not shipped yet)."""


def _load_path(name: str, path: Path, package: bool = False) -> ModuleType:
    """Import ``path`` as module ``name`` (a package if ``package``), without touching ``cache_dit``."""
    if name in sys.modules:
        return sys.modules[name]
    locations = [str(path.parent)] if package else None
    spec = importlib.util.spec_from_file_location(name, path, submodule_search_locations=locations)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path} as {name}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def _reference_package(via_path: bool) -> ModuleType:
    if not via_path:
        return importlib.import_module("cache_dit.reference")
    return _load_path("frontier_reference", PACKAGE_DIR / "reference" / "__init__.py", package=True)


def _models_module(via_path: bool) -> ModuleType:
    # cache_dit/bench/models.py is self-contained except inside its own _reference(), unused here.
    if not via_path:
        return importlib.import_module("cache_dit.bench.models")
    return _load_path("frontier_bench_models", PACKAGE_DIR / "bench" / "models.py")


def _reference_pipeline(name: str, via_path: bool) -> Any:
    pipeline_cls = _reference_package(via_path).FashionFluxPipeline
    if name == "reference":
        return pipeline_cls.from_reference()
    # The deep model is added by another branch as from_reference("deep"); absent until it lands
    # (today's first parameter is `device`, so look before passing "deep").
    first = next(iter(inspect.signature(pipeline_cls.from_reference).parameters), "device")
    if first in ("device", "torch_dtype"):
        raise ModelUnavailable("deep-reference: FashionFluxPipeline.from_reference takes no model "
                               "variant yet (the deep model is not shipped)")
    try:
        return pipeline_cls.from_reference("deep")
    except (TypeError, ValueError, FileNotFoundError, KeyError) as exc:
        raise ModelUnavailable(f"deep-reference: no shipped deep weights ({type(exc).__name__}: "
                               f"{exc})") from None


def build_model(name: str, samples: int, steps: int = 28, via_path: bool = False) -> Any:
    """A ``cache_dit.bench.models.BenchModel`` for ``name`` with ``samples`` images per call.

    reference / deep-reference: ``samples`` images of classes 0, 1, 2, ... (distinct up to 10), CFG
    2.5, decoded images. medium-flux: ``samples`` latents per call (what the transformer moved)."""
    if name not in MODEL_NAMES:
        raise ValueError(f"unknown model {name!r}; allowed: {', '.join(MODEL_NAMES)}")
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
        raise ValueError(f"samples must be an int >= 1, got {samples!r}")
    models = _models_module(via_path)
    if name == "medium-flux":
        return models._medium_flux(steps, samples)
    pipe = _reference_pipeline(name, via_path)
    pipe.set_progress_bar_config(disable=True)
    return models.BenchModel(
        name=name, pipe=pipe, transformer=pipe.transformer, block_lists=BLOCK_LISTS, steps=steps,
        call_kwargs={"class_labels": [i % 10 for i in range(samples)], "guidance_scale": GUIDANCE},
        default_configs=[], output_kind="images")


def num_blocks(model: Any) -> int:
    return sum(len(getattr(model.transformer, name)) for name in model.block_lists)


@contextlib.contextmanager
def count_kept(transformer: torch.nn.Module, block_lists: Sequence[str]) -> Iterator[dict]:
    """Count block executions that really ran, the same way for every library.

    A block counts as executed in a transformer call when any ``nn.Linear`` inside it fired: a
    cache may stand in for a block through the block's own ``__call__`` (diffusers' hooks, ours)
    or skip calling it at all (cache-dit 1.5.3), and neither runs its linears. ``possible`` grows
    by the number of blocks on every transformer call, so ``executed / possible`` is the fraction
    of block executions kept."""
    blocks = [block for name in block_lists for block in getattr(transformer, name)]
    fired = [False] * len(blocks)
    result = {"executed": 0, "possible": 0, "calls": 0}

    def begin(*_: Any) -> None:
        fired[:] = [False] * len(blocks)

    def end(*_: Any) -> None:
        result["calls"] += 1
        result["possible"] += len(blocks)
        result["executed"] += sum(fired)

    handles = [transformer.register_forward_pre_hook(begin), transformer.register_forward_hook(end)]
    for index, block in enumerate(blocks):
        def mark(*_: Any, index: int = index) -> None:
            fired[index] = True
        for module in block.modules():
            if isinstance(module, torch.nn.Linear):
                handles.append(module.register_forward_hook(mark))
    try:
        yield result
    finally:
        for handle in handles:
            handle.remove()


@dataclass
class Method:
    """One point of a sweep: a library's configuration with how to switch it on and off."""

    library: str
    method: str
    knobs: str
    enable: Callable[[], Any]
    disable: Callable[[], Any]


def timed_run(model: Any, seeds: Sequence[int]) -> tuple[list[np.ndarray], float, float]:
    """(outputs per seed, kept fraction, CPU seconds per seed) of one generation per seed."""
    outputs, seconds = [], 0.0
    with count_kept(model.transformer, model.block_lists) as counted:
        for seed in seeds:
            start = time.process_time()
            outputs.append(model.generate(seed))
            seconds += time.process_time() - start
    if counted["possible"] == 0:
        raise RuntimeError(f"{model.name}: the transformer was never called")
    return outputs, counted["executed"] / counted["possible"], seconds / len(seeds)


def sweep(model: Any, methods: Sequence[Method], seeds: Sequence[int], uncached_every: int = 4,
          log: Callable[[str], None] = print, strict: bool = True
          ) -> tuple[list[np.ndarray], list[dict], float]:
    """Run every method once per seed, with uncached runs interleaved for the CPU-time baseline.

    Returns (uncached outputs per seed, one row per method: library, method, knobs, kept, cpu_s,
    speedup, outputs, error; the largest deviation of a later uncached run from the first). An
    uncached run comes first and after every ``uncached_every`` methods; a method's speedup
    divides the mean of the uncached runs around it (load drifts on a shared machine) by its own
    CPU time. A method that raises is recorded with its error. ``strict``: a later uncached run
    that is not bit-identical to the first raises (a disable() that leaves state behind)."""
    torch.set_num_threads(1)
    reference, kept, first = timed_run(model, seeds)
    if abs(kept - 1.0) > 1e-12:
        raise RuntimeError(f"{model.name}: uncached run kept {kept:.4f} of block executions, not 1")
    uncached = [(0, first)]  # (index of the next method, CPU s)
    drift = 0.0
    rows: list[dict] = []
    for index, item in enumerate(methods):
        row = {"library": item.library, "method": item.method, "knobs": item.knobs,
               "kept": float("nan"), "cpu_s": float("nan"), "outputs": None, "error": ""}
        try:
            item.enable()
            try:
                row["outputs"], row["kept"], row["cpu_s"] = timed_run(model, seeds)
            finally:
                item.disable()
        except Exception as exc:  # one broken peer configuration must not stop the sweep
            row["error"] = f"{type(exc).__name__}: {exc}"
        rows.append(row)
        log(f"  [{index + 1}/{len(methods)}] {item.library} {item.method} {item.knobs}: "
            + (row["error"] or f"kept {row['kept']:.3f}, {row['cpu_s']:.2f} CPU s"))
        if (index + 1) % uncached_every == 0 or index + 1 == len(methods):
            outputs, _, seconds = timed_run(model, seeds[:1])
            deviation = float(np.abs(outputs[0] - reference[0]).max())
            drift = max(drift, deviation)
            if strict and deviation > 0:
                raise RuntimeError(f"{model.name}: an uncached run after {item.method} {item.knobs} "
                                   f"differs from the first by {deviation:g}; disable() left "
                                   f"something behind")
            uncached.append((index + 1, seconds))
    for index, row in enumerate(rows):
        before = [s for at, s in uncached if at <= index][-1:]
        after = [s for at, s in uncached if at > index][:1]
        base = statistics.mean(before + after)
        row["uncached_cpu_s"] = base
        row["speedup"] = base / row["cpu_s"] if row["cpu_s"] == row["cpu_s"] else float("nan")
    return reference, rows, drift
