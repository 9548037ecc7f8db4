"""Fn_compute_blocks=0: no probe block, the steps come from a mask or a budget, and a cached step
runs no block at all (the calibrator stands in for the whole chain)."""

from __future__ import annotations

import pytest
import torch

import cache_dit
from cache_dit.rules.budget import probe_free_steps
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
    computed_steps = [s for s in range(STEPS) if s not in item.cached_steps]
    gaps = [b - a for a, b in zip(computed_steps, computed_steps[1:])]
    if computed <= 0.6 * STEPS:  # laid out before the first step, spacing 1.5: gaps never shrink
        assert STEPS - 1 in item.cached_steps
        assert computed_steps == sorted(probe_free_steps(STEPS, computed, spacing=1.5))
        assert gaps == sorted(gaps), computed_steps
    else:  # the head (25% of the steps, at most half of the computes), then even shares
        head = min(round(0.25 * STEPS), computed // 2)
        assert computed_steps[:head] == list(range(head))
        assert max(gaps[head - 1:]) - min(gaps[head - 1:]) <= 1, computed_steps


def test_budget_spacing_lays_the_computes_out(flux):
    pipe, counter, _ = flux
    _, executed, even = _run_counted(pipe, counter, Fn_compute_blocks=0, compute_budget=0.5,
                                     budget_spacing=1.0)
    _, _, crowded = _run_counted(pipe, counter, Fn_compute_blocks=0, compute_budget=0.5,
                                 budget_spacing=2.0)
    assert executed["total"] == 6 * counter.num_blocks
    # 6 computes over steps 0..10: even at 0, 2, 4, 6, 8, 10; squared 0, 0.4, 1.6, 3.6, 6.4, 10, rounded and pushed apart
    assert [s for s in range(STEPS) if s not in even.cached_steps] == [0, 2, 4, 6, 8, 10]
    assert [s for s in range(STEPS) if s not in crowded.cached_steps] == [0, 1, 2, 4, 6, 10]


@pytest.mark.parametrize("spacing", [0.4, 4.5, "1.5", True, float("nan")])
def test_bad_budget_spacing_is_rejected(spacing):
    with pytest.raises(ValueError, match=r"budget_spacing must be a number in \[0.5, 4\]"):
        cache_dit.CacheOptions.from_kwargs(
            dict(Fn_compute_blocks=0, compute_budget=0.5, budget_spacing=spacing))


@pytest.mark.parametrize("options", [dict(Fn_compute_blocks=1, compute_budget=0.5),
                                     dict(Fn_compute_blocks=0, steps_computation_mask="fast")])
def test_budget_spacing_needs_a_probe_free_budget(options):
    with pytest.raises(ValueError, match="budget_spacing=1.2 lays out a probe-free budget"):
        cache_dit.CacheOptions.from_kwargs(dict(options, budget_spacing=1.2))


def test_disable_restores_the_uncached_output(flux):
    pipe, counter, uncached = flux
    _run_counted(pipe, counter, Fn_compute_blocks=0, compute_budget=0.5, calibrator="foca")
    with counter.count() as executed:
        out = run(pipe, steps=STEPS)
    assert executed["total"] == STEPS * counter.num_blocks
    assert torch.equal(out, uncached)


@pytest.mark.parametrize("spacing", [None, 1.25])
def test_probe_free_tags_round_trip(spacing):
    options = cache_dit.CacheOptions.from_kwargs(
        dict(Fn_compute_blocks=0, compute_budget=0.3, calibrator="foca", budget_spacing=spacing))
    tag = format_tag(options)
    assert "F0B0" in tag and ("SP1.25" in tag) == (spacing is not None)
    assert parse_tag(tag) == options
