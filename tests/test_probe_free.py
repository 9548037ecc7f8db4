"""Fn_compute_blocks=0: no probe block, the steps come from a mask or a budget, and a cached step
runs no block at all (the calibrator stands in for the whole chain)."""

from __future__ import annotations

import pytest
import torch

import cache_dit
from cache_dit.tags import format_tag, parse_tag
from counting import BlockExecutionCounter, count_linear_calls
from flux_fixture import BLOCK_LISTS, make_flux, run

STEPS = 12
MASK = [1, 1, 1, 0, 0, 1, 0, 0, 1, 0, 0, 1]  # 1 = compute
FREE = [i for i, m in enumerate(MASK) if not m]


@pytest.fixture(scope="module")
def flux():
    pipe = make_flux()
    with count_linear_calls(pipe.transformer, BLOCK_LISTS) as calibration:
        uncached = run(pipe, steps=STEPS)
    counter = BlockExecutionCounter(pipe.transformer, BLOCK_LISTS, STEPS, calibration)
    return pipe, counter, uncached


def _run_counted(pipe, counter, **options):
    cache_dit.enable_cache(pipe, **options)
    try:
        with counter.count() as executed:
            out = run(pipe, steps=STEPS)
        return out, executed, cache_dit.summary(pipe)[0]
    finally:
        cache_dit.disable_cache(pipe)


def test_a_mask_that_computes_every_step_is_bit_identical(flux):
    pipe, counter, uncached = flux
    out, executed, item = _run_counted(pipe, counter, Fn_compute_blocks=0,
                                       steps_computation_mask=[1] * STEPS)
    assert item.cached_steps == [] and executed["total"] == STEPS * counter.num_blocks
    assert torch.equal(out, uncached)


@pytest.mark.parametrize("stand_in", [{}, {"calibrator": "foca"},
                                      {"enable_taylorseer": True,
                                       "taylorseer_kwargs": {"n_derivatives": 1}}])
def test_masked_free_steps_run_no_block_and_stay_close(flux, stand_in):
    pipe, counter, uncached = flux
    out, executed, item = _run_counted(pipe, counter, Fn_compute_blocks=0, Bn_compute_blocks=0,
                                       steps_computation_mask=MASK, warmup_steps=0,
                                       **stand_in)
    assert item.cached_steps == FREE, "the mask's free steps, and only those, are cached"
    computed = STEPS - len(FREE)
    # every block ran exactly on the computed steps: a cached step runs none, not even a probe
    assert executed["per_block"] == {i: computed for i in range(counter.num_blocks)}
    assert item.kept_fraction == pytest.approx(computed / STEPS)
    assert item.residual_diffs == {}  # nothing was measured
    error = (out - uncached).abs().max().item() / uncached.abs().max().item()
    assert 0 < error < 0.02, error  # cached, not equal; measured 0.005 with each stand-in


def test_a_forecaster_changes_what_stands_in(flux):
    pipe, counter, _ = flux
    plain, _, _ = _run_counted(pipe, counter, Fn_compute_blocks=0, steps_computation_mask=MASK,
                               warmup_steps=0)
    seer, _, _ = _run_counted(pipe, counter, Fn_compute_blocks=0, steps_computation_mask=MASK,
                              warmup_steps=0, enable_taylorseer=True,
                              taylorseer_kwargs={"n_derivatives": 1})
    assert not torch.allclose(plain, seer, atol=1e-5)


@pytest.mark.parametrize("budget", [0.25, 0.5, 0.75])
def test_a_probe_free_budget_is_exact(flux, budget):
    pipe, counter, uncached = flux
    out, executed, item = _run_counted(pipe, counter, Fn_compute_blocks=0, compute_budget=budget)
    computed = round(budget * STEPS)  # a cached step keeps nothing: computes = budget x steps
    assert len(item.cached_steps) == STEPS - computed
    assert executed["total"] == computed * counter.num_blocks
    assert 0 not in item.cached_steps
    # the head (25% of the steps, at most half of the computes) computes, then even shares
    head = min(round(0.25 * STEPS), computed // 2)
    assert not set(range(head)) & set(item.cached_steps)
    computed_steps = [s for s in range(STEPS) if s not in item.cached_steps]
    gaps = [b - a for a, b in zip(computed_steps[head - 1:], computed_steps[head:])]
    assert max(gaps) - min(gaps) <= 1, computed_steps


def test_disable_restores_the_uncached_output(flux):
    pipe, counter, uncached = flux
    _run_counted(pipe, counter, Fn_compute_blocks=0, compute_budget=0.5, calibrator="foca")
    with counter.count() as executed:
        out = run(pipe, steps=STEPS)
    assert executed["total"] == STEPS * counter.num_blocks
    assert torch.equal(out, uncached)


def test_probe_free_tags_round_trip():
    options = cache_dit.CacheOptions.from_kwargs(
        dict(Fn_compute_blocks=0, compute_budget=0.3, calibrator="foca"))
    tag = format_tag(options)
    assert "F0B0" in tag and parse_tag(tag) == options
