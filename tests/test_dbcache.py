"""DBCache semantics on a 6-block Flux (2 double + 4 single stream blocks as one chain)."""

from __future__ import annotations

import pytest
import torch

import cache_dit
from counting import BlockExecutionCounter, count_linear_calls
from flux_fixture import BLOCK_LISTS, make_flux, run

STEPS = 12
NUM_BLOCKS = 6


@pytest.fixture(scope="module")
def reference():
    """Uncached output and a block-execution counter calibrated on it."""
    pipe = make_flux()
    with count_linear_calls(pipe.transformer, BLOCK_LISTS) as calibration:
        ref = run(pipe, steps=STEPS)
    return ref, calibration


@pytest.fixture
def pipe():
    return make_flux()


def _counter(pipe, calibration):
    return BlockExecutionCounter(pipe.transformer, BLOCK_LISTS, STEPS, calibration)


def _always(**extra):
    """Options that cache every eligible step (random weights change a lot between steps)."""
    return dict(residual_diff_threshold=1e9, **extra)


def test_f1b0_runs_only_first_double_block_on_cached_steps(pipe, reference):
    ref, calibration = reference
    cache_dit.enable_cache(pipe, **_always(Fn_compute_blocks=1, Bn_compute_blocks=0,
                                           warmup_steps=3))
    with _counter(pipe, calibration).count() as executed:
        out = run(pipe, steps=STEPS)
    stats = cache_dit.summary(pipe)[0]
    assert stats.cached_steps == list(range(3, STEPS))
    per_block = executed["per_block"]
    assert per_block[0] == STEPS  # the first double-stream block runs every step
    for index in range(1, NUM_BLOCKS):  # the other double block and all single blocks
        assert per_block[index] == 3
    assert stats.blocks_saved_fraction == pytest.approx((STEPS - 3) * 5 / (STEPS * NUM_BLOCKS))
    assert not torch.equal(out, ref)


def test_fn_bn_roles_span_both_block_lists(pipe, reference):
    _, calibration = reference
    cache_dit.enable_cache(pipe, **_always(Fn_compute_blocks=3, Bn_compute_blocks=2,
                                           warmup_steps=2))
    with _counter(pipe, calibration).count() as executed:
        run(pipe, steps=STEPS)
    per_block = executed["per_block"]
    # F3 = both double blocks + first single block; B2 = last two single blocks; middle = 1 block
    assert [per_block[i] for i in range(NUM_BLOCKS)] == [STEPS, STEPS, STEPS, 2, STEPS, STEPS]


def test_bn_compute_blocks_ids_skip_non_compute_bn_blocks(pipe, reference):
    _, calibration = reference
    cache_dit.enable_cache(pipe, **_always(
        Fn_compute_blocks=1, Bn_compute_blocks=3, warmup_steps=2,
        Bn_compute_blocks_ids=cache_dit.block_range(0, 3, 2),  # Bn blocks 0 and 2 always run
        non_compute_blocks_diff_threshold=1e9))
    with _counter(pipe, calibration).count() as executed:
        run(pipe, steps=STEPS)
    per_block = executed["per_block"]
    # chain: 0 = Fn, 1-2 middle, 3-5 Bn with Bn id 1 (block 4) skippable
    assert per_block[0] == per_block[3] == per_block[5] == STEPS
    assert per_block[1] == per_block[2] == 2
    # block 4 needs its own residual from a computed step first: computed at warmup steps only
    assert per_block[4] == 2


def test_bn_non_compute_blocks_run_when_diff_is_above_their_threshold(pipe, reference):
    _, calibration = reference
    cache_dit.enable_cache(pipe, **_always(
        Fn_compute_blocks=1, Bn_compute_blocks=3, warmup_steps=2, Bn_compute_blocks_ids=[0, 2],
        non_compute_blocks_diff_threshold=0.0))
    with _counter(pipe, calibration).count() as executed:
        run(pipe, steps=STEPS)
    assert executed["per_block"][4] == STEPS


def test_warmup_max_cached_and_max_continuous(pipe):
    cache_dit.enable_cache(pipe, **_always(Fn_compute_blocks=1, warmup_steps=4,
                                           max_cached_steps=5, max_continuous_cached_steps=2))
    run(pipe, steps=STEPS)
    cached = cache_dit.summary(pipe)[0].cached_steps
    # after 4 warmup steps: cache, cache, compute, cache, cache, compute, cache(5th) ... limit
    assert cached == [4, 5, 7, 8, 10]


def test_steps_computation_mask_forces_compute(pipe):
    mask = [1, 1, 0, 1, 0, 0, 1, 0, 0, 0, 1, 0]
    cache_dit.enable_cache(pipe, **_always(Fn_compute_blocks=1, warmup_steps=0,
                                           steps_computation_mask=mask))
    run(pipe, steps=STEPS)
    cached = cache_dit.summary(pipe)[0].cached_steps
    assert cached == [i for i, must in enumerate(mask) if not must and i > 0]


def test_steps_mask_preset_resolves_with_the_schedule_length(pipe):
    cache_dit.enable_cache(pipe, **_always(Fn_compute_blocks=1, warmup_steps=0,
                                           steps_computation_mask="fast"))
    run(pipe, steps=STEPS)
    mask = cache_dit.steps_mask("fast", STEPS)
    cached = cache_dit.summary(pipe)[0].cached_steps
    assert cached == [i for i, must in enumerate(mask) if not must]


def test_threshold_decides_from_relative_l1_of_fn_residual(pipe):
    cache_dit.enable_cache(pipe, Fn_compute_blocks=1, warmup_steps=0, residual_diff_threshold=0.0)
    run(pipe, steps=STEPS)
    diffs = cache_dit.summary(pipe)[0].residual_diffs
    assert sorted(diffs) == list(range(1, STEPS))  # every step after the first has a diff
    threshold = sorted(diffs.values())[len(diffs) // 2]
    cache_dit.enable_cache(pipe, Fn_compute_blocks=1, warmup_steps=0,
                           residual_diff_threshold=threshold)
    run(pipe, steps=STEPS)
    stats = cache_dit.summary(pipe)[0]
    assert stats.cached_steps, "some steps fall below the median diff"
    for step in stats.cached_steps:
        assert stats.residual_diffs[step] < threshold
    for step, diff in stats.residual_diffs.items():
        if step not in stats.cached_steps:
            assert diff >= threshold


def test_two_pipelines_never_share_state(reference):
    ref, _ = reference
    a, b = make_flux(), make_flux()
    options = _always(Fn_compute_blocks=1, warmup_steps=2, max_continuous_cached_steps=1)
    cache_dit.enable_cache(a, **options)
    expected = run(a, steps=STEPS)
    cache_dit.enable_cache(b, **options)
    # interleave calls: b has a different seed; a must still reproduce its own result
    run(b, seed=5, steps=7)
    assert torch.equal(run(a, steps=STEPS), expected)
    assert cache_dit.summary(b)[0].streams["main"].steps == 7
    cache_dit.disable_cache(b)
    assert torch.equal(run(a, steps=STEPS), expected)
    cache_dit.disable_cache(a)
    assert torch.equal(run(a, steps=STEPS), ref)


@pytest.mark.parametrize("change", [dict(size=48), dict(batch=2), dict(steps=7)])
def test_shape_batch_and_step_changes_between_calls(change):
    options = _always(Fn_compute_blocks=1, warmup_steps=2, max_continuous_cached_steps=1)
    fresh = make_flux()
    cache_dit.enable_cache(fresh, **options)
    kwargs = {"steps": STEPS, **change}
    expected = run(fresh, **kwargs)
    reused = make_flux()
    cache_dit.enable_cache(reused, **options)
    run(reused, steps=STEPS)  # a first generation at other settings
    assert torch.equal(run(reused, **kwargs), expected)


def test_exception_mid_loop_does_not_corrupt_next_call(pipe):
    cache_dit.enable_cache(pipe, **_always(Fn_compute_blocks=1, warmup_steps=2))
    expected = run(pipe, steps=STEPS)

    def explode(_pipe, step, _t, _kwargs):
        if step == 6:
            raise RuntimeError("user callback failed")
        return {}

    with pytest.raises(RuntimeError, match="user callback failed"):
        run(pipe, steps=STEPS, callback_on_step_end=explode)
    assert torch.equal(run(pipe, steps=STEPS), expected)
    assert cache_dit.summary(pipe)[0].streams["main"].steps == STEPS


def test_enable_twice_reconfigures_without_double_wrapping(pipe):
    cache_dit.enable_cache(pipe, Fn_compute_blocks=2)
    cache_dit.enable_cache(pipe, **_always(Fn_compute_blocks=1, warmup_steps=3))
    registry = pipe.transformer.transformer_blocks[0]._diffusers_hook
    assert [n for n in registry.hooks if n.startswith("cache_dit")] == ["cache_dit.block"]
    out = run(pipe, steps=STEPS)
    other = make_flux()
    cache_dit.enable_cache(other, **_always(Fn_compute_blocks=1, warmup_steps=3))
    assert torch.equal(out, run(other, steps=STEPS))
    assert cache_dit.summary(pipe)[0].tag == "DBCache_F1B0_W3_MC-1_R1e+09"


def test_failed_enable_leaves_pipeline_exactly_as_it_was(pipe, reference):
    ref, _ = reference
    before = dict(vars(pipe.transformer.transformer_blocks[0]))
    with pytest.raises(ValueError, match="exceeds the 6 transformer blocks"):
        cache_dit.enable_cache(pipe, Fn_compute_blocks=4, Bn_compute_blocks=3)
    assert dict(vars(pipe.transformer.transformer_blocks[0])) == before
    assert "set_timesteps" not in vars(pipe.scheduler)
    assert torch.equal(run(pipe, steps=STEPS), ref)
    # a failed re-configuration keeps the previous, working cache
    cache_dit.enable_cache(pipe, **_always(Fn_compute_blocks=1, warmup_steps=3))
    cached = run(pipe, steps=STEPS)
    with pytest.raises(ValueError, match="Fn_compute_block"):
        cache_dit.enable_cache(pipe, Fn_compute_block=1)
    assert torch.equal(run(pipe, steps=STEPS), cached)
    assert cache_dit.summary(pipe)[0].tag.startswith("DBCache_F1B0_W3")


def test_default_options_fit_small_models_but_explicit_ones_do_not(pipe, reference):
    ref, calibration = reference
    cache_dit.enable_cache(pipe)  # default F8 on a 6-block chain: F5, one block left to skip
    assert cache_dit.summary(pipe)[0].tag == "DBCache_F5B0_W8_MC-1_R0.12"
    # the fitted F5 with a threshold that caches: only the one block after F5 is stood in for
    cache_dit.enable_cache(pipe, **_always())
    stats = cache_dit.summary(pipe)[0]
    assert stats.tag == "DBCache_F5B0_W8_MC-1_R1e+09"
    warmup = cache_dit.CacheOptions().warmup_steps
    with _counter(pipe, calibration).count() as executed:
        out = run(pipe, steps=STEPS)
    stats = cache_dit.summary(pipe)[0]
    assert len(stats.cached_steps) > 0, "the fitted F5 must cache something for this test to mean anything"
    assert stats.cached_steps == list(range(warmup, STEPS))
    per_block = executed["per_block"]
    assert [per_block[i] for i in range(NUM_BLOCKS - 1)] == [STEPS] * (NUM_BLOCKS - 1)
    assert per_block[NUM_BLOCKS - 1] == warmup
    assert stats.blocks_saved_fraction == pytest.approx((STEPS - warmup) / (STEPS * NUM_BLOCKS))
    assert not torch.equal(out, ref)
    with pytest.raises(ValueError, match=r"Fn_compute_blocks \(8\).*exceeds the 6"):
        cache_dit.enable_cache(pipe, Fn_compute_blocks=8)


def test_summary_reports_patterns_and_lists(pipe):
    cache_dit.enable_cache(pipe, **_always(Fn_compute_blocks=1, warmup_steps=2))
    run(pipe, steps=STEPS)
    (stats,) = cache_dit.summary(pipe)
    assert stats.name == "transformer"
    assert stats.block_lists == {"transformer_blocks": 2, "single_transformer_blocks": 4}
    assert stats.patterns["transformer_blocks"] == "(hidden, encoder) -> (encoder, hidden)"
    text = str(stats)
    assert "DBCache_F1B0_W2" in text and "cached 10" in text


def test_bare_transformer_custom_loop_resets_per_generation():
    pipe = make_flux()
    transformer = pipe.transformer
    cache_dit.enable_cache(transformer, num_inference_steps=5,
                           **_always(Fn_compute_blocks=1, warmup_steps=2))
    gen = torch.Generator().manual_seed(0)
    hidden = torch.randn(1, 16, 16, generator=gen)
    kwargs = dict(encoder_hidden_states=torch.randn(1, 7, 32, generator=gen),
                  pooled_projections=torch.randn(1, 32, generator=gen),
                  txt_ids=torch.zeros(7, 3), img_ids=torch.zeros(16, 3), return_dict=False)

    def loop():
        x = hidden
        for t in torch.linspace(1.0, 0.2, 5):
            with torch.no_grad():
                x = x - 0.2 * transformer(hidden_states=x, timestep=t.expand(1), **kwargs)[0]
        return x

    first, second = loop(), loop()
    assert torch.equal(first, second)
    assert cache_dit.summary(transformer)[0].cached_steps == [2, 3, 4]
    cache_dit.reset_cache(transformer)
    assert torch.equal(loop(), first)
    cache_dit.disable_cache(transformer)
    assert not hasattr(transformer.transformer_blocks[0], "_diffusers_hook")


def test_explicit_transformer_and_blocks_override_discovery(pipe, reference):
    _, calibration = reference
    cache_dit.enable_cache(pipe, transformer=pipe.transformer,
                           blocks=pipe.transformer.single_transformer_blocks,
                           return_hidden_states_first=False,
                           **_always(Fn_compute_blocks=1, warmup_steps=2))
    with _counter(pipe, calibration).count() as executed:
        run(pipe, steps=STEPS)
    per_block = executed["per_block"]
    assert per_block[0] == per_block[1] == STEPS  # double blocks are not part of the chain
    assert per_block[2] == STEPS  # F1 of the single-stream chain
    assert per_block[3] == per_block[4] == per_block[5] == 2
    assert cache_dit.summary(pipe)[0].block_lists == {"single_transformer_blocks": 4}
