"""cache-dit 1.5.3 side of the frontier benchmark; runs in .venv-peers (scripts/setup_peers.sh).

    .venv-peers/bin/python benchmarks/frontier_peers_worker.py JOB.json

JOB.json (written by bench_frontier.py): ``{"model", "samples", "steps", "seeds", "configs":
[[method, spec], ...], "out"}`` with specs from ``frontier_grids.cachedit_grid``. ``import
cache_dit`` here is the PyPI release; our reference pipeline and model builders are loaded from
their files under other module names (frontier_common, ``via_path=True``). Writes to ``out``:
``uncached_<seed>.npy``, ``<index>_<seed>.npy`` per configuration and ``results.json`` (kept,
CPU s, speedup, error per configuration; versions; uncached drift).
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import frontier_common as common  # noqa: E402
from frontier_grids import knob_string  # noqa: E402

os.environ.setdefault("CACHE_DIT_LOG_LEVEL", "error")


def _calibrator(name: str | None) -> Any:
    from cache_dit import DMDCalibratorConfig, FoCaCalibratorConfig, TaylorSeerCalibratorConfig

    if name is None:
        return None
    if name.startswith("taylorseer"):
        return TaylorSeerCalibratorConfig(taylorseer_order=int(name[len("taylorseer"):]))
    if name == "foca":
        return FoCaCalibratorConfig()
    if name == "dmd":
        return DMDCalibratorConfig()
    raise ValueError(f"unknown calibrator {name!r}; allowed: taylorseer1, taylorseer2, foca, dmd")


def _target(model: Any) -> Any:
    """What enable_cache gets: FluxPipeline has a registered adapter; our reference pipeline gets a
    BlockAdapter built the way 1.5.3's Flux adapter builds one (both block lists as one chain)."""
    import cache_dit
    from cache_dit.caching.patch_functors import FluxPatchFunctor

    if model.name == "medium-flux":
        return model.pipe
    transformer = model.transformer
    return cache_dit.BlockAdapter(
        pipe=model.pipe, transformer=transformer,
        blocks=transformer.transformer_blocks + transformer.single_transformer_blocks,
        blocks_name="transformer_blocks", dummy_blocks_names=["single_transformer_blocks"],
        patch_functor=FluxPatchFunctor(), forward_pattern=cache_dit.ForwardPattern.Pattern_1,
        has_separate_cfg=True)


def methods(model: Any, configs: list) -> list[common.Method]:
    import cache_dit
    from cache_dit import DBCacheConfig

    separate_cfg = model.name != "medium-flux"  # the reference pipelines call cond and uncond

    def make(method: str, spec: dict) -> common.Method:
        def enable() -> None:
            mask = spec.get("mask")
            config = DBCacheConfig(
                Fn_compute_blocks=spec["Fn"], Bn_compute_blocks=spec["Bn"],
                residual_diff_threshold=spec["threshold"], max_warmup_steps=spec["warmup"],
                max_continuous_cached_steps=spec.get("mcc", -1), enable_separate_cfg=separate_cfg,
                num_inference_steps=model.steps,
                steps_computation_mask=(cache_dit.steps_mask(mask_policy=mask, total_steps=model.steps)
                                        if mask else None))
            cache_dit.enable_cache(_target(model), cache_config=config,
                                   calibrator_config=_calibrator(spec.get("calibrator")))

        return common.Method("cache-dit 1.5.3", method, knob_string(spec), enable,
                             lambda: cache_dit.disable_cache(model.pipe))

    return [make(method, spec) for method, spec in configs]


def main(job_path: str) -> None:
    logging.disable(logging.WARNING)
    torch.set_num_threads(1)
    import cache_dit

    if not hasattr(cache_dit, "DBCacheConfig"):
        raise SystemExit(f"frontier_peers_worker: `import cache_dit` found {cache_dit.__file__}, "
                         f"not cache-dit 1.5.3; run it with .venv-peers/bin/python and no PYTHONPATH")
    job = json.loads(Path(job_path).read_text())
    out = Path(job["out"])
    out.mkdir(parents=True, exist_ok=True)
    model = common.build_model(job["model"], job["samples"], job["steps"], via_path=True)
    seeds = job["seeds"]
    reference, rows, drift = common.sweep(model, methods(model, job["configs"]), seeds,
                                          uncached_every=job.get("uncached_every", 4),
                                          log=lambda line: print(line, flush=True), strict=False)
    for seed, image in zip(seeds, reference):
        np.save(out / f"uncached_{seed}.npy", image)
    results = []
    for index, row in enumerate(rows):
        for seed, image in zip(seeds, row.pop("outputs") or []):
            np.save(out / f"{index}_{seed}.npy", image)
        results.append(row)
    import cache_dit
    import diffusers

    (out / "results.json").write_text(json.dumps({
        "rows": results, "uncached_drift": drift,
        "versions": {"cache_dit": cache_dit.__version__, "diffusers": diffusers.__version__,
                     "torch": torch.__version__}}, indent=1))


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit(f"usage: {sys.argv[0]} JOB.json")
    main(sys.argv[1])
