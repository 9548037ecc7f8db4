"""compute_budget: every generation keeps the asked fraction of block executions (within 3
points) without calibration, on any class, seed, step count (20-50) and CFG setting."""

from __future__ import annotations

import pytest
import torch

import cache_dit
from cache_dit.rules.base import StepSchedule
from cache_dit.rules.budget import (BudgetRule, Placement, computed_steps_for_budget,
                                    probe_free_steps)
from counting import BlockExecutionCounter, count_linear_calls
from flux_fixture import BLOCK_LISTS, make_flux, run

TOLERANCE = 0.03


@pytest.fixture(scope="module")
def reference(offline_reference):
    return offline_reference()


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


def test_budget_protects_the_head(reference):
    cache_dit.enable_cache(reference, compute_budget=0.5, Fn_compute_blocks=1)
    _generate(reference, 3, 0, 40, 2.5)
    cached = cache_dit.summary(reference)[0].cached_steps
    # 25% of 40 steps is 10, but at most half of the 16 computes: 8
    assert cached and min(cached) == 8
    cache_dit.disable_cache(reference)


def test_a_small_budget_keeps_half_its_computes_out_of_the_head():
    rule = BudgetRule(0.3, num_blocks=6, kept_when_cached=1)
    state = rule.new_state(StepSchedule(28, frozenset()))
    # 28 steps at 30%: 4 computes; the 25% head (7 steps) is cut to 2, so 2 are placed freely
    assert state.computes == 4 and state.must == {0, 1}


def test_placement_options_for_the_ablation():
    schedule = StepSchedule(28, frozenset({5}))
    old = Placement(head_fraction=0.15, force_last_step=True)
    state = BudgetRule(0.5, num_blocks=6, kept_when_cached=1, placement=old).new_state(schedule)
    assert state.required == {0, 5, 27} and state.must == {0, 1, 2, 3, 5, 27}
    state = BudgetRule(0.5, num_blocks=6, kept_when_cached=1).new_state(schedule)
    assert state.required == {0, 5} and state.must == {0, 1, 2, 3, 4, 5}  # 7 head steps > 11 // 2


def test_computed_steps_arithmetic():
    # 6 blocks, F1B0: a cached step keeps 1 of 6; 28 steps at 50% -> (0.5*6-1)/5*28 = 11.2 -> 11
    assert computed_steps_for_budget(0.5, 28, 6, 1) == 11
    assert computed_steps_for_budget(1.0, 28, 6, 1) == 28
    assert computed_steps_for_budget(0.01, 28, 6, 1) == 1  # below the probe's cost: step 0 only
    assert computed_steps_for_budget(0.5, 10, 4, 4) == 10  # nothing to skip


def _place(rule: BudgetRule, state, steps: int, change, grows=lambda moved, since: moved) -> list[int]:
    """Computed steps when the probe moves by ``change(step)`` per step (relative L1), the change
    since the last computed step being ``grows(sum of the per-step changes, steps since)``."""
    computed, moved = [], 0.0
    for step in range(steps):
        if step == 0:
            rule.on_compute(state, step, torch.ones(1))
            computed.append(step)
            continue
        moved += change(step)
        since = step - computed[-1]
        may_cache, diff = rule.decide(state, step, [grows(moved, since), 1.0])
        assert diff == pytest.approx(grows(moved, since))
        if may_cache:
            rule.on_cache(state, step, torch.ones(1))
        else:
            rule.on_compute(state, step, torch.ones(1))
            computed.append(step)
            moved = 0.0
    return computed


def test_rule_places_computes_exactly_on_toy_diffs():
    rule = BudgetRule(0.5, num_blocks=6, kept_when_cached=1)
    state = rule.new_state(StepSchedule(20, frozenset()))
    # 25% of 20 = 5 head steps (at most half of the 8 computes: 4)
    assert state.computes == 8 and state.must == {0, 1, 2, 3}
    computed = _place(rule, state, 20, lambda step: 0.125)  # (exact in binary: no ties broken by rounding)
    # uniform change: the 4 free computes spread over steps 4..19. The even share is taken from
    # each step on (steps left / computes left), so spending runs slightly ahead of the stride and
    # the tail is left to the calibrator.
    assert computed == [0, 1, 2, 3, 7, 11, 14, 17]


def test_the_jump_into_step_1_does_not_set_the_pace():
    # The change into step 1 is 9x the pace that follows (as on the reference model). Left in the
    # rate, it stretches the first free gap; left out, the gaps are even.
    change = lambda step: 1.125 if step == 1 else 0.125  # noqa: E731
    placed = {}
    for first in (1, 2):
        rule = BudgetRule(0.5, num_blocks=6, kept_when_cached=1,
                          placement=Placement(first_paced_step=first))
        placed[first] = _place(rule, rule.new_state(StepSchedule(20, frozenset())), 20, change)
    assert placed[2] == [0, 1, 2, 3, 7, 11, 14, 17]
    assert placed[1][4] > 7, placed[1]  # the first free compute comes late


def test_a_change_that_accumulates_slowly_does_not_delay_the_computes():
    # Over k steps the probe moves sqrt(k) single steps (directions decorrelate, as on medium
    # FLUX). Paced by the accumulated change the rule falls behind and must compute back to back
    # at the end; paced by each interval's first step it keeps to the even share.
    placed = {}
    for paced_by in ("accumulated", "first_step"):
        rule = BudgetRule(0.6, num_blocks=6, kept_when_cached=1,
                          placement=Placement(paced_by=paced_by))
        state = rule.new_state(StepSchedule(28, frozenset()))
        placed[paced_by] = _place(rule, state, 28, lambda step: 0.125,
                                  grows=lambda moved, since: moved / since ** 0.5)
    assert len(placed["accumulated"]) == len(placed["first_step"]) == 15
    late = {name: [b - a for a, b in zip(steps[6:], steps[7:])] for name, steps in placed.items()}
    assert placed["accumulated"][-2:] == [26, 27] and max(late["accumulated"]) == 4
    assert placed["first_step"][:7] == list(range(7)) and set(late["first_step"]) == {2, 3}


def test_an_interval_that_starts_fast_computes_sooner():
    # The same pace everywhere, except that the interval after step 10 starts 3x faster.
    rule = BudgetRule(0.6, num_blocks=6, kept_when_cached=1)
    state = rule.new_state(StepSchedule(28, frozenset()))
    even = _place(rule, state, 28, lambda step: 0.125)
    after = next(s for s in even if s >= 10)
    rule = BudgetRule(0.6, num_blocks=6, kept_when_cached=1)
    state = rule.new_state(StepSchedule(28, frozenset()))
    fast = _place(rule, state, 28, lambda step: 0.375 if step == after + 1 else 0.125)
    assert fast[:even.index(after) + 1] == even[:even.index(after) + 1]
    assert fast[even.index(after) + 1] == after + 1  # computes right away


def test_bad_placement_names_the_value():
    with pytest.raises(ValueError, match="paced_by must be 'first_step' or 'accumulated', got 'x'"):
        Placement(paced_by="x")
    with pytest.raises(ValueError, match=r"budget_spacing must be a number in \[0.5, 4\].*got 0.1"):
        Placement(spacing=0.1)


def test_probe_free_layout_on_toy_step_counts():
    # 11 of 28 at 1.5: 26 * (i/10)^1.5 = 0, 0.82, 2.33, 4.27, 6.58, 9.19, 12.08, 15.23, 18.6, 22.2, 26
    assert sorted(probe_free_steps(28, 11)) == [0, 1, 2, 4, 7, 9, 12, 15, 19, 22, 26]
    assert sorted(probe_free_steps(28, 11, spacing=1.0)) == [0, 3, 5, 8, 10, 13, 16, 18, 21, 23, 26]
    # rounding collisions are pushed apart: 5 of 8 at 4: 6 * (i/4)^4 = 0, 0.02, 0.38, 1.9, 6
    assert sorted(probe_free_steps(8, 5, spacing=4.0)) == [0, 1, 2, 3, 6]
    assert probe_free_steps(8, 8) == frozenset(range(8))
    assert probe_free_steps(8, 7) == frozenset(range(7))  # only the last step is left out
    assert probe_free_steps(8, 1) == frozenset({0})
    assert probe_free_steps(8, 2) == frozenset({0, 6})


def test_probe_free_layout_keeps_required_steps_and_the_count():
    # warmup 0..3 with 6 of 12: placed 0, 0.4->1, 1.6->2, 3.6->4, 6.4->6, 10 (spacing 2); adding
    # step 3 drops the placed step nearest another compute (4, next to 3)
    steps = probe_free_steps(12, 6, frozenset(range(4)), spacing=2.0)
    assert sorted(steps) == [0, 1, 2, 3, 6, 10]
    # a required last step: the placed step nearest to another compute goes
    steps = probe_free_steps(12, 4, frozenset({0, 11}), spacing=1.0)
    assert sorted(steps) == [0, 3, 7, 11]  # placed 0, 3.33->3, 6.67->7, 10; 10 sits next to 11


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
