"""Hybrid TaylorSeer, hybrid cache CFG (separate cond/uncond streams), and torch.compile."""

from __future__ import annotations

import logging

import pytest
import torch

import cache_dit
from cache_dit.rules.threshold import relative_l1
from counting import BlockExecutionCounter, count_linear_calls
from flux_fixture import BLOCK_LISTS, TEXT_DIM, embeds, make_flux, run

STEPS = 12


def _schedule_options(**extra):
    """Cache every other step after warmup, whatever the diffs: same cached steps in every mode."""
    return {**dict(Fn_compute_blocks=1, residual_diff_threshold=1e9, warmup_steps=3,
                   max_continuous_cached_steps=1), **extra}


# ---------------------------------------------------------------------------- TaylorSeer
@pytest.mark.parametrize("cache_type", ["residual", "hidden_states"])
def test_taylorseer_forecast_is_used_and_adds_no_block_executions(cache_type):
    pipe = make_flux()
    with count_linear_calls(pipe.transformer, BLOCK_LISTS) as calibration:
        ref = run(pipe, steps=STEPS)
    counter = BlockExecutionCounter(pipe.transformer, BLOCK_LISTS, STEPS, calibration)

    cache_dit.enable_cache(pipe, **_schedule_options())
    with counter.count() as plain_blocks:
        plain = run(pipe, steps=STEPS)
    plain_cached = cache_dit.summary(pipe)[0].cached_steps

    cache_dit.enable_cache(pipe, **_schedule_options(
        enable_taylorseer=True, enable_encoder_taylorseer=True, taylorseer_cache_type=cache_type,
        taylorseer_kwargs={"n_derivatives": 1}))
    with counter.count() as seer_blocks:
        seer = run(pipe, steps=STEPS)
    stats = cache_dit.summary(pipe)[0]
    assert stats.cached_steps == plain_cached and plain_cached
    assert seer_blocks["total"] == plain_blocks["total"]
    assert not torch.equal(seer, plain)  # the forecast, not the last residual, was used
    assert "T1E1O1" in stats.tag

    # nothing cached -> TaylorSeer never forecasts -> exactly uncached
    cache_dit.enable_cache(pipe, Fn_compute_blocks=1, residual_diff_threshold=0.0,
                           enable_taylorseer=True, taylorseer_cache_type=cache_type)
    assert torch.equal(run(pipe, steps=STEPS), ref)


def test_taylorseer_keeps_m_plus_1_buffers_per_stream():
    pipe = make_flux()
    cache_dit.enable_cache(pipe, **_schedule_options(
        enable_taylorseer=True, enable_encoder_taylorseer=True, taylorseer_kwargs={"n_derivatives": 2}))
    controller = pipe._cache_dit_session.controllers[0]
    seen = []
    original = controller.end_call

    def spy():
        for stream in controller.streams.values():
            for pair in stream.middle.values():
                seen.extend(len(seer.derivatives) for seer in pair)
        original()

    controller.end_call = spy
    run(pipe, steps=STEPS)
    assert max(seen) == 3


# ---------------------------------------------------------------------------- CFG
def _true_cfg(pipe, steps=STEPS, negative_scale=30.0, **kwargs):
    negative = {f"negative_{k}": v * negative_scale for k, v in embeds(seed=9).items()}
    return run(pipe, steps=steps, true_cfg_scale=4.0, **negative, **kwargs)


def _first_block_residuals(pipe):
    """Per transformer call: the hidden-states residual of the first block."""
    residuals = []
    block = pipe.transformer.transformer_blocks[0]

    def hook(_module, args, kwargs, output):
        residuals.append(output[1] - kwargs["hidden_states"])

    return residuals, block.register_forward_hook(hook, with_kwargs=True)


def test_separate_cfg_detected_and_each_branch_compares_with_itself():
    pipe = make_flux()
    residuals, handle = _first_block_residuals(pipe)
    _true_cfg(pipe)
    handle.remove()
    assert len(residuals) == 2 * STEPS
    cond, uncond = residuals[0::2], residuals[1::2]

    cache_dit.enable_cache(pipe, Fn_compute_blocks=1, residual_diff_threshold=0.0, warmup_steps=0)
    _true_cfg(pipe)
    stats = cache_dit.summary(pipe)[0]
    assert set(stats.streams) == {"cond", "uncond"}
    for label, series in (("cond", cond), ("uncond", uncond)):
        diffs = stats.streams[label].residual_diffs
        expected = {t: relative_l1(series[t], series[t - 1]) for t in range(1, STEPS)}
        assert diffs == pytest.approx(expected, rel=1e-5)
    cross = relative_l1(uncond[5], cond[5])
    assert cross > 5 * max(stats.streams["uncond"].residual_diffs.values())


def test_each_cached_branch_is_built_from_its_own_buffers():
    """At the transformer level with fixed cond/uncond inputs (only t moves), cached calls stay
    close to the uncached ones; borrowing the other branch's residual would not."""
    pipe = make_flux()
    transformer = pipe.transformer
    gen = torch.Generator().manual_seed(0)
    hidden = torch.randn(1, 16, 16, generator=gen)
    common = dict(txt_ids=torch.zeros(7, 3), img_ids=torch.zeros(16, 3), return_dict=False)
    branches = {
        "cond": dict(encoder_hidden_states=torch.randn(1, 7, TEXT_DIM, generator=gen),
                     pooled_projections=torch.randn(1, TEXT_DIM, generator=gen)),
        "uncond": dict(encoder_hidden_states=-30 * torch.randn(1, 7, TEXT_DIM, generator=gen),
                       pooled_projections=-30 * torch.randn(1, TEXT_DIM, generator=gen)),
    }
    timesteps = torch.linspace(1.0, 0.9, 8)  # slow drift: consecutive steps are alike

    def loop():
        outs = []
        for t in timesteps:
            for name in ("cond", "uncond"):
                with torch.no_grad():
                    outs.append(transformer(hidden_states=hidden, timestep=t.expand(1),
                                            **branches[name], **common)[0])
        return outs

    uncached = loop()
    errors = {}
    for mode in (None, False):
        cache_dit.enable_cache(transformer, num_inference_steps=8, Fn_compute_blocks=1,
                               residual_diff_threshold=1e9, warmup_steps=2,
                               do_separate_classifier_free_guidance=mode)
        cached = loop()
        errors[mode] = max(relative_l1(c, u) for c, u in zip(cached, uncached))
        if mode is None:
            streams = cache_dit.summary(transformer)[0].streams
            assert streams["cond"].cached_steps == streams["uncond"].cached_steps == list(range(2, 8))
    assert errors[None] < 0.05
    assert errors[False] > 10 * errors[None]  # one shared stream mixes the branches


def test_cfg_diff_compute_separate_false_reuses_the_cond_decision():
    pipe = make_flux()
    cache_dit.enable_cache(pipe, Fn_compute_blocks=1, warmup_steps=2, residual_diff_threshold=0.35,
                           cfg_diff_compute_separate=False)
    _true_cfg(pipe)
    streams = cache_dit.summary(pipe)[0].streams
    assert streams["uncond"].residual_diffs == streams["cond"].residual_diffs
    assert streams["uncond"].cached_steps == streams["cond"].cached_steps
    cache_dit.enable_cache(pipe, Fn_compute_blocks=1, warmup_steps=2, residual_diff_threshold=0.35)
    _true_cfg(pipe)
    streams = cache_dit.summary(pipe)[0].streams
    assert streams["uncond"].residual_diffs != streams["cond"].residual_diffs


def test_cfg_compute_first_labels_the_first_call_uncond():
    pipe = make_flux()
    cache_dit.enable_cache(pipe, Fn_compute_blocks=1, cfg_compute_first=True)
    _true_cfg(pipe, steps=4)
    assert list(cache_dit.summary(pipe)[0].streams) == ["uncond", "cond"]


def test_separate_cfg_flag_on_batched_cfg_warns_and_uses_one_stream(caplog):
    pipe = make_flux()
    cache_dit.enable_cache(pipe, Fn_compute_blocks=1, do_separate_classifier_free_guidance=True)
    with caplog.at_level(logging.WARNING, logger="cache_dit"):
        run(pipe, steps=6)
    assert "called once per step" in caplog.text
    assert list(cache_dit.summary(pipe)[0].streams) == ["main"]


def test_shared_stream_on_separate_cfg_pipeline_warns(caplog):
    pipe = make_flux()
    cache_dit.enable_cache(pipe, Fn_compute_blocks=1, do_separate_classifier_free_guidance=False)
    with caplog.at_level(logging.WARNING, logger="cache_dit"):
        _true_cfg(pipe, steps=4)
    assert "share one cache" in caplog.text


# ---------------------------------------------------------------------------- torch.compile
def test_torch_compile_matches_eager_and_does_not_recompile_between_steps():
    torch._dynamo.reset()
    counters = torch._dynamo.utils.counters
    options = _schedule_options(warmup_steps=2)
    eager_pipe = make_flux(double=1, single=2)
    cache_dit.enable_cache(eager_pipe, **options)
    eager = run(eager_pipe, steps=8, size=16)
    eager_cached = cache_dit.summary(eager_pipe)[0].cached_steps

    pipe = make_flux(double=1, single=2)
    cache_dit.enable_cache(pipe, **options)
    # eager backend: recompiles are Dynamo's (guards, graph breaks); inductor codegen adds only minutes
    pipe.transformer = torch.compile(pipe.transformer, backend="eager")
    counters.clear()
    first = run(pipe, steps=8, size=16)  # compiles computed and cached variants
    frames_after_first = counters["frames"]["ok"]
    assert frames_after_first > 0
    second = run(pipe, steps=8, size=16)
    assert counters["frames"]["ok"] == frames_after_first, "recompiled on a later step"
    assert cache_dit.summary(pipe)[0].cached_steps == eager_cached
    torch.testing.assert_close(first, eager, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(second, first, rtol=0, atol=0)
    torch._dynamo.reset()


def test_set_compile_configs_raises_dynamo_limits_and_rejects_bad_values():
    config = torch._dynamo.config
    saved = (config.recompile_limit, config.accumulated_recompile_limit)
    try:
        cache_dit.set_compile_configs()
        assert (config.recompile_limit, config.accumulated_recompile_limit) == (96, 2048)
        with pytest.raises(ValueError, match="recompile_limit must be an int >= 1, got 0"):
            cache_dit.set_compile_configs(recompile_limit=0)
    finally:
        config.recompile_limit, config.accumulated_recompile_limit = saved


def test_enable_cache_on_an_already_compiled_transformer():
    pipe = make_flux(double=1, single=2)
    eager = make_flux(double=1, single=2)
    options = _schedule_options(warmup_steps=2)
    cache_dit.enable_cache(eager, **options)
    expected = run(eager, steps=6, size=16)
    pipe.transformer = torch.compile(pipe.transformer, backend="eager")
    cache_dit.enable_cache(pipe, **options)  # finds the module behind the compile wrapper
    torch.testing.assert_close(run(pipe, steps=6, size=16), expected, rtol=1e-5, atol=1e-5)
    assert cache_dit.summary(pipe)[0].cached_steps == cache_dit.summary(eager)[0].cached_steps
    torch._dynamo.reset()
