"""enable_cache with defaults on every tiny diffusers family: exactness, real skipping, restore.

For each pipeline family, with nothing but discovery:
1. never-cache settings (threshold 0; warmup >= steps) give a bit-identical output;
2. with caching, the number of blocks that really execute (counted from linears inside the
   blocks) is exactly what the cached steps predict, and the output stays near the uncached one;
3. after disable_cache the output is bit-identical again and no hook is left behind;
4. summary() reports the steps, streams and savings that happened.
"""

from __future__ import annotations

import pytest
import torch

import cache_dit
from counting import BlockExecutionCounter, count_linear_calls
from cache_dit.testing.tiny_pipelines import CASES, build

FAMILIES = sorted(CASES)


def _relative_error(out: torch.Tensor, ref: torch.Tensor) -> float:
    return float((out - ref).norm() / ref.norm().clamp_min(1e-12))


def _no_cache_dit_hooks(case) -> bool:
    for tr in case.transformers:
        for module in tr.modules():
            registry = getattr(module, "_diffusers_hook", None)
            if registry is not None and any(n.startswith("cache_dit") for n in registry.hooks):
                return False
    return "set_timesteps" not in vars(case.pipe.scheduler) and not hasattr(
        case.pipe, "_cache_dit_session")


@pytest.mark.parametrize("name", FAMILIES)
def test_family(name: str) -> None:
    case = build(name)
    first = case.transformers[0]
    with count_linear_calls(first, case.block_lists) as calibration:
        ref = case.run(seed=0)
    first_calls = case.expected_calls()[case.transformer_attrs[0]]
    counter = BlockExecutionCounter(first, case.block_lists, first_calls, calibration)
    other_seed = case.run(seed=1)
    num_blocks = case.num_blocks

    # 1. never cache -> bit-identical (defaults discovery only: no transformer=/blocks=)
    cache_dit.enable_cache(case.pipe, residual_diff_threshold=0.0, Fn_compute_blocks=1,
                           warmup_steps=0)
    assert torch.equal(case.run(seed=0), ref)
    assert all(s.cached_steps == [] for s in cache_dit.summary(case.pipe)[0].streams.values())
    cache_dit.enable_cache(case.pipe, residual_diff_threshold=1e9, Fn_compute_blocks=1,
                           warmup_steps=case.steps)
    assert torch.equal(case.run(seed=0), ref)

    # 2. caching every other step after warmup: exact execution count, output close
    bn = 1 if num_blocks >= 3 else 0
    cache_dit.enable_cache(case.pipe, Fn_compute_blocks=1, Bn_compute_blocks=bn,
                           residual_diff_threshold=1e9, warmup_steps=2,
                           max_continuous_cached_steps=1)
    with counter.count() as executed:
        out = case.run(seed=0)
    summaries = cache_dit.summary(case.pipe)
    assert len(summaries) == len(case.transformers)
    stats = summaries[0]
    calls = sum(s.steps for s in stats.streams.values())
    assert calls == first_calls
    cached_calls = sum(len(s.cached_steps) for s in stats.streams.values())
    assert cached_calls > 0
    skipped_per_cached_call = num_blocks - 1 - bn
    assert executed["total"] == calls * num_blocks - cached_calls * skipped_per_cached_call
    assert stats.blocks_saved_fraction == pytest.approx(
        cached_calls * skipped_per_cached_call / (calls * num_blocks))
    if case.separate_cfg:
        assert set(stats.streams) == {"cond", "uncond"}
        assert stats.streams["cond"].cached_steps == stats.streams["uncond"].cached_steps
    else:
        assert set(stats.streams) == {"main"}
    for s in stats.streams.values():
        # warmup 2, then alternate cached / computed
        assert s.cached_steps == list(range(2, s.steps, 2))
    assert torch.isfinite(out).all()
    # The caching error must be small next to what a different seed changes.
    assert _relative_error(out, ref) < 0.5 * _relative_error(other_seed, ref)

    # 3. disable -> bit-identical, nothing left behind
    cache_dit.disable_cache(case.pipe)
    cache_dit.disable_cache(case.pipe)  # twice is harmless
    assert _no_cache_dit_hooks(case)
    assert torch.equal(case.run(seed=0), ref)
