"""compute_budget: every generation keeps the asked fraction of block executions (within 3
points) without calibration, on any class, seed, step count (20-50) and CFG setting."""

from __future__ import annotations

import pytest
import torch

import cache_dit
from cache_dit.reference import FashionFluxPipeline
from cache_dit.rules.base import StepSchedule
from cache_dit.rules.budget import BudgetRule, computed_steps_for_budget
from counting import BlockExecutionCounter, count_linear_calls
from flux_fixture import BLOCK_LISTS, make_flux, run

TOLERANCE = 0.03


@pytest.fixture(scope="module")
def reference():
    pipe = FashionFluxPipeline.from_reference()
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _generate(pipe, label: int, seed: int, steps: int, guidance: float) -> torch.Tensor:
    with torch.no_grad():
        return pipe([label], num_inference_steps=steps, guidance_scale=guidance,
                    generator=torch.Generator().manual_seed(seed), output_type="pt").images


@pytest.mark.parametrize("budget", [0.3, 0.5, 0.8])
def test_every_generation_keeps_the_budget(reference, budget):
    cache_dit.enable_cache(reference, compute_budget=budget, Fn_compute_blocks=1)
    try:
        for label, seed, steps, guidance in [(0, 0, 20, 2.5), (7, 1, 33, 1.0), (9, 2, 50, 2.5),
                                             (4, 3, 27, 4.0)]:
            _generate(reference, label, seed, steps, guidance)
            (item,) = cache_dit.summary(reference)
            assert item.compute_budget == budget
            for label_name, stats in item.streams.items():
                assert stats.steps == steps
                kept = stats.blocks_run / stats.blocks_total
                assert abs(kept - budget) <= TOLERANCE, (label_name, steps, kept)
            assert len(item.streams) == (2 if guidance > 1 else 1)
            assert item.cached_steps, "caches something"
            assert f"compute budget: {budget:.1%} kept asked" in str(item)
    finally:
        cache_dit.disable_cache(reference)


def test_budget_counts_real_block_executions_with_bn_blocks():
    pipe = make_flux()
    with count_linear_calls(pipe.transformer, BLOCK_LISTS) as calibration:
        run(pipe, steps=20)
    counter = BlockExecutionCounter(pipe.transformer, BLOCK_LISTS, 20, calibration)
    cache_dit.enable_cache(pipe, compute_budget=0.6, Fn_compute_blocks=1, Bn_compute_blocks=1)
    with counter.count() as executed:
        run(pipe, steps=20)
    kept = executed["total"] / (20 * 6)
    assert abs(kept - 0.6) <= TOLERANCE
    assert kept == pytest.approx(cache_dit.summary(pipe)[0].kept_fraction)


def test_budget_protects_the_head_and_the_last_step(reference):
    cache_dit.enable_cache(reference, compute_budget=0.5, Fn_compute_blocks=1)
    _generate(reference, 3, 0, 40, 2.5)
    cached = cache_dit.summary(reference)[0].cached_steps
    # 15% of 40 steps is 6 (at most half of the 16 computes), and the last step
    assert cached and min(cached) >= 6 and 39 not in cached
    cache_dit.disable_cache(reference)


def test_a_small_budget_keeps_half_its_computes_out_of_the_head():
    rule = BudgetRule(0.3, num_blocks=6, kept_when_cached=1)
    state = rule.new_state(StepSchedule(28, frozenset()))
    # 28 steps at 30%: 4 computes; the 15% head (4 steps) is cut to 2, so 1 is placed freely
    assert state.computes == 4 and state.must == {0, 1, 27}


def test_computed_steps_arithmetic():
    # 6 blocks, F1B0: a cached step keeps 1 of 6; 28 steps at 50% -> (0.5*6-1)/5*28 = 11.2 -> 11
    assert computed_steps_for_budget(0.5, 28, 6, 1) == 11
    assert computed_steps_for_budget(1.0, 28, 6, 1) == 28
    assert computed_steps_for_budget(0.01, 28, 6, 1) == 1  # below the probe's cost: step 0 only
    assert computed_steps_for_budget(0.5, 10, 4, 4) == 10  # nothing to skip


def test_rule_places_computes_exactly_on_toy_diffs():
    rule = BudgetRule(0.5, num_blocks=6, kept_when_cached=1)
    state = rule.new_state(StepSchedule(20, frozenset()))
    # 15% of 20 = 3 head steps (at most half of the 8 computes)
    assert state.computes == 8 and state.must == {0, 1, 2, 19}
    computed = []
    for step in range(20):
        if step == 0:
            rule.on_compute(state, step, torch.ones(1))
            computed.append(step)
            continue
        may_cache, diff = rule.decide(state, step, [0.1 * (step - state.last_computed), 1.0])
        assert diff == pytest.approx(0.1 * (step - state.last_computed))
        if may_cache:
            rule.on_cache(state, step, torch.ones(1))
        else:
            rule.on_compute(state, step, torch.ones(1))
            computed.append(step)
    # uniform change: the 4 free computes spread evenly over steps 3..18, the last step computes
    assert len(computed) == 8 and computed[:3] == [0, 1, 2] and computed[-1] == 19
    gaps = [b - a for a, b in zip(computed[2:], computed[3:])]
    assert max(gaps) - min(gaps) <= 2


@pytest.mark.parametrize("options,error,message", [
    (dict(compute_budget=0), ValueError, r"compute_budget must be in \(0, 1\].*got 0"),
    (dict(compute_budget=1.5), ValueError, r"compute_budget must be in \(0, 1\].*got 1.5"),
    (dict(compute_budget="0.5"), TypeError, "compute_budget must be a number"),
    (dict(compute_budget=True), TypeError, "compute_budget must be a number"),
    (dict(compute_budget=0.5, residual_diff_threshold=0.1), ValueError,
     "cannot be combined with residual_diff_threshold=0.1"),
    (dict(compute_budget=0.5, max_cached_steps=3), ValueError,
     "cannot be combined with max_cached_steps=3"),
])
def test_bad_budgets_name_the_values(options, error, message):
    with pytest.raises(error, match=message):
        cache_dit.CacheOptions.from_kwargs(options)


def test_a_mask_that_leaves_too_little_room_is_rejected_before_any_block_runs():
    pipe = make_flux()
    cache_dit.enable_cache(pipe, compute_budget=0.3, Fn_compute_blocks=1,
                           steps_computation_mask="slow")
    calls = []
    handle = pipe.transformer.transformer_blocks[0].register_forward_pre_hook(
        lambda *_: calls.append(1))
    with pytest.raises(ValueError, match=r"compute_budget=0.3 allows \d+ computed steps of 20, but "
                                         r"\d+ must compute"):
        run(pipe, steps=20)
    handle.remove()
    assert calls == []


def test_a_bare_transformer_needs_the_step_count():
    pipe = make_flux()
    cache_dit.enable_cache(pipe.transformer, compute_budget=0.5, Fn_compute_blocks=1)
    with pytest.raises(ValueError, match="needs the number of steps"):
        run(pipe, steps=6)


def test_calibrate_picks_the_best_candidate_at_the_target_and_saves_it(reference, tmp_path):
    calls = [dict(class_labels=[2], num_inference_steps=20, guidance_scale=2.5, output_type="pt"),
             dict(class_labels=[8], num_inference_steps=24, guidance_scale=2.5, output_type="pt",
                  generator=torch.Generator().manual_seed(5))]
    path = tmp_path / "cache.yaml"
    result = cache_dit.calibrate(reference, calls=calls, target=0.5, save=path,
                                 candidates=[{"Fn_compute_blocks": 1}, {"Fn_compute_blocks": 2}])
    assert not hasattr(reference, "_cache_dit_session")  # left uncached
    assert [r["options"]["Fn_compute_blocks"] for r in result.report] == [1, 2]
    best = max(result.report, key=lambda r: r["psnr"])
    assert result.options == best["options"] and result.psnr == best["psnr"]
    assert all(abs(k - 0.5) <= TOLERANCE for r in result.report for k in r["kept"])
    assert cache_dit.load_options(path) == result.options
    # the saved options reproduce the measured quality on the same calls
    uncached = _generate(reference, 8, 5, 24, 2.5)
    cache_dit.enable_cache(reference, **cache_dit.load_options(path))
    cached = _generate(reference, 8, 5, 24, 2.5)
    cache_dit.disable_cache(reference)
    assert 0 < float(((cached - uncached) ** 2).mean()) < 0.01


def test_calibrate_rejects_bad_input(reference):
    with pytest.raises(ValueError, match=r"compute_budget must be in \(0, 1\].*got 1.2"):
        cache_dit.calibrate(reference, calls=[dict(class_labels=[1])], target=1.2)
    with pytest.raises(ValueError, match="non-empty list"):
        cache_dit.calibrate(reference, calls=[], target=0.5)
    cache_dit.enable_cache(reference, Fn_compute_blocks=1)
    with pytest.raises(ValueError, match="needs an uncached pipeline"):
        cache_dit.calibrate(reference, calls=[dict(class_labels=[1])], target=0.5)
    cache_dit.disable_cache(reference)
