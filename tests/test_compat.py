"""cache-dit 1.x names (cache_dit.compat): the 1.x user guide's code samples on tiny pipelines.

Each test follows one sample of cache-dit 1.x's "Unified Cache APIs" guide, with a tiny pipeline
in place of ``from_pretrained`` and block counts / thresholds scaled to 2-4 block models that run
8 steps (the guide's F8B8 needs 16 blocks). Outputs must equal the native-option equivalent
bit for bit, and every test of caching first checks that steps were cached.
"""

from __future__ import annotations

import pytest
import torch

import cache_dit
from cache_dit import (BlockAdapter, DBCacheConfig, ForwardPattern, ParamsModifier,
                       TaylorSeerCalibratorConfig)
from cache_dit.testing.tiny_pipelines import build


@pytest.fixture(scope="module")
def flux():
    return build("flux")


@pytest.fixture(scope="module")
def qwen():
    return build("qwenimage")


def _native(case, **options) -> tuple[torch.Tensor, list[int]]:
    cache_dit.enable_cache(case.pipe, **options)
    try:
        out = case.run(0)
        return out, cache_dit.summary(case.pipe)[0].cached_steps
    finally:
        cache_dit.disable_cache(case.pipe)


def test_one_line_enable_then_disable_runs_the_original_pipe(flux):
    reference = flux.run(0)
    cache_dit.enable_cache(flux.pipe)
    flux.run(0)
    cache_dit.disable_cache(flux.pipe)
    assert torch.equal(flux.run(0), reference)


def test_dbcache_config_and_taylorseer_config_equal_the_native_options(flux):
    cache_dit.enable_cache(
        flux.pipe,
        cache_config=DBCacheConfig(max_warmup_steps=2, max_cached_steps=-1, Fn_compute_blocks=1,
                                   Bn_compute_blocks=1, residual_diff_threshold=0.5),
        calibrator_config=TaylorSeerCalibratorConfig(taylorseer_order=1),
    )
    out = flux.run(0)
    stats = cache_dit.summary(flux.pipe)
    cache_dit.disable_cache(flux.pipe)
    native, native_cached = _native(
        flux, warmup_steps=2, max_cached_steps=-1, Fn_compute_blocks=1, Bn_compute_blocks=1,
        residual_diff_threshold=0.5, enable_taylorseer=True, enable_encoder_taylorseer=True,
        taylorseer_kwargs={"n_derivatives": 1})
    assert stats[0].cached_steps == native_cached and len(native_cached) > 0
    assert torch.equal(out, native)


def test_block_adapter_manual_qwen_image_pattern_1(qwen):
    tr = qwen.pipe.transformer
    cache_dit.enable_cache(
        BlockAdapter(pipe=qwen.pipe, transformer=qwen.pipe.transformer,
                     blocks=qwen.pipe.transformer.transformer_blocks,
                     forward_pattern=ForwardPattern.Pattern_1),
        cache_config=DBCacheConfig(Fn_compute_blocks=1, residual_diff_threshold=0.5,
                                   max_warmup_steps=2),
    )
    out = qwen.run(0)
    cached = cache_dit.summary(qwen.pipe)[0].cached_steps
    cache_dit.disable_cache(qwen.pipe)
    native, native_cached = _native(qwen, transformer=tr, blocks=tr.transformer_blocks,
                                    forward_pattern=ForwardPattern.Pattern_1, Fn_compute_blocks=1,
                                    residual_diff_threshold=0.5, warmup_steps=2)
    assert cached == native_cached and len(cached) > 0
    assert torch.equal(out, native)


def test_block_adapter_auto_uses_the_1x_defaults(qwen):
    adapter = BlockAdapter(pipe=qwen.pipe, auto=True, forward_pattern=ForwardPattern.Pattern_1)
    cache_dit.enable_cache(adapter)
    out = qwen.run(0)
    (stats,) = cache_dit.summary(adapter)  # summary and disable_cache take the adapter, as in 1.x
    cache_dit.disable_cache(adapter)
    with pytest.raises(ValueError, match="not enabled"):
        cache_dit.summary(qwen.pipe)
    default = DBCacheConfig()
    cache_dit.enable_cache(qwen.pipe, forward_pattern=ForwardPattern.Pattern_1,
                           residual_diff_threshold=default.residual_diff_threshold,
                           warmup_steps=default.max_warmup_steps)
    native = qwen.run(0)
    (native_stats,) = cache_dit.summary(qwen.pipe)
    cache_dit.disable_cache(qwen.pipe)
    assert stats.tag == native_stats.tag and "_R0.08" in stats.tag  # 1.x's default threshold
    assert torch.equal(out, native)


def test_hybrid_forward_pattern_flux_two_block_lists(flux):
    tr = flux.pipe.transformer
    cache_dit.enable_cache(
        BlockAdapter(pipe=flux.pipe, transformer=flux.pipe.transformer,
                     blocks=[tr.transformer_blocks, tr.single_transformer_blocks],
                     forward_pattern=[ForwardPattern.Pattern_1, ForwardPattern.Pattern_3]),
        cache_config=DBCacheConfig(Fn_compute_blocks=1, residual_diff_threshold=0.5,
                                   max_warmup_steps=2),
    )
    out = flux.run(0)
    cached = cache_dit.summary(flux.pipe)[0].cached_steps
    cache_dit.disable_cache(flux.pipe)
    native, native_cached = _native(
        flux, transformer=tr, blocks=[tr.transformer_blocks, tr.single_transformer_blocks],
        forward_pattern=[ForwardPattern.Pattern_1, ForwardPattern.Pattern_3],
        Fn_compute_blocks=1, residual_diff_threshold=0.5, warmup_steps=2)
    assert cached == native_cached and len(cached) > 0
    assert torch.equal(out, native)


def test_transformer_only_interface_resets_after_num_inference_steps(qwen):
    tr = qwen.pipe.transformer
    cache_dit.enable_cache(
        BlockAdapter(transformer=tr, blocks=tr.transformer_blocks,
                     forward_pattern=ForwardPattern.Pattern_1),
        cache_config=DBCacheConfig(num_inference_steps=qwen.steps, Fn_compute_blocks=1,
                                   residual_diff_threshold=0.5, max_warmup_steps=2),
    )
    try:
        first = qwen.run(0)
        cached = cache_dit.summary(tr)[0].cached_steps
        second = qwen.run(0)  # no scheduler hook on a bare transformer: the step count resets it
        assert torch.equal(first, second)
    finally:
        cache_dit.disable_cache(tr)
    cache_dit.enable_cache(tr, blocks=tr.transformer_blocks, forward_pattern=ForwardPattern.Pattern_1,
                           num_inference_steps=qwen.steps, Fn_compute_blocks=1,
                           residual_diff_threshold=0.5, warmup_steps=2)
    try:
        native = qwen.run(0)
        assert cache_dit.summary(tr)[0].cached_steps == cached and len(cached) > 0
    finally:
        cache_dit.disable_cache(tr)
    assert torch.equal(first, native)


def test_refresh_context_sample(flux):
    """The guide's refresh_context sample: steps per request, then a new cache config."""
    tr, steps = flux.pipe.transformer, flux.steps
    config = dict(Fn_compute_blocks=1, residual_diff_threshold=0.5, max_warmup_steps=2)
    cache_dit.enable_cache(flux.pipe.transformer,
                           cache_config=DBCacheConfig(num_inference_steps=None, **config))
    try:
        cache_dit.refresh_context(flux.pipe.transformer, num_inference_steps=steps, verbose=True)
        out_a = flux.run(0)
        stats_a = cache_dit.summary(flux.pipe.transformer)
        cache_dit.refresh_context(flux.pipe.transformer, num_inference_steps=steps - 2, verbose=True)
        out_b = flux.run(0, num_inference_steps=steps - 2)
        stats_b = cache_dit.summary(flux.pipe.transformer)
        cache_dit.refresh_context(
            flux.pipe.transformer,
            cache_config=DBCacheConfig(residual_diff_threshold=0.8, max_warmup_steps=1,
                                       max_cached_steps=3, max_continuous_cached_steps=2,
                                       Fn_compute_blocks=1, num_inference_steps=steps),
            verbose=True)
        out_c = flux.run(0)
        stats_c = cache_dit.summary(flux.pipe.transformer)
    finally:
        cache_dit.disable_cache(tr)
    native = dict(Fn_compute_blocks=1, residual_diff_threshold=0.5, warmup_steps=2)
    for out, stats, options, run in (
            (out_a, stats_a, dict(native, num_inference_steps=steps), {}),
            (out_b, stats_b, dict(native, num_inference_steps=steps - 2),
             {"num_inference_steps": steps - 2}),
            (out_c, stats_c, dict(residual_diff_threshold=0.8, warmup_steps=1, max_cached_steps=3,
                                  max_continuous_cached_steps=2, Fn_compute_blocks=1,
                                  num_inference_steps=steps), {})):
        cache_dit.enable_cache(tr, **options)
        try:
            expected = flux.run(0, **run)
            assert stats[0].cached_steps == cache_dit.summary(tr)[0].cached_steps
        finally:
            cache_dit.disable_cache(tr)
        assert len(stats[0].cached_steps) > 0
        # refresh_context(num_inference_steps=) sets the coming generations' length, not the
        # options, so the first two tags carry no N token
        named = options if run is not None and "max_cached_steps" in options else {
            k: v for k, v in options.items() if k != "num_inference_steps"}
        assert stats[0].tag == cache_dit.CacheOptions.from_kwargs(named).tag()
        assert torch.equal(out, expected)


def test_refresh_context_on_the_transformer_of_a_cached_pipeline(flux):
    options = dict(Fn_compute_blocks=1, residual_diff_threshold=0.5, warmup_steps=2)
    reference, cached = _native(flux, **options)
    cache_dit.enable_cache(flux.pipe, **options)
    try:
        flux.run(0, num_inference_steps=flux.steps - 3)  # a shorter request first
        cache_dit.refresh_context(flux.pipe.transformer, num_inference_steps=flux.steps)
        out = flux.run(0)
        assert cache_dit.summary(flux.pipe)[0].cached_steps == cached and len(cached) > 0
    finally:
        cache_dit.disable_cache(flux.pipe)
    assert torch.equal(out, reference)


def test_one_params_modifier_overrides_the_shared_config(qwen):
    tr = qwen.pipe.transformer
    cache_dit.enable_cache(
        BlockAdapter(pipe=qwen.pipe, transformer=tr, blocks=tr.transformer_blocks,
                     forward_pattern=ForwardPattern.Pattern_1),
        cache_config=DBCacheConfig(Fn_compute_blocks=1, Bn_compute_blocks=1,
                                   residual_diff_threshold=0.1),
        # an override equal to a default still overrides (Bn 0 is both libraries' default)
        params_modifiers=[ParamsModifier(cache_config=DBCacheConfig().reset(
            Bn_compute_blocks=0, residual_diff_threshold=0.5, max_warmup_steps=2))],
    )
    out = qwen.run(0)
    cached, tag = cache_dit.summary(qwen.pipe)[0].cached_steps, cache_dit.summary(qwen.pipe)[0].tag
    cache_dit.disable_cache(qwen.pipe)
    native_tag = cache_dit.CacheOptions(Fn_compute_blocks=1, residual_diff_threshold=0.5,
                                        warmup_steps=2).tag()
    native, native_cached = _native(qwen, transformer=tr, blocks=tr.transformer_blocks,
                                    forward_pattern=ForwardPattern.Pattern_1, Fn_compute_blocks=1,
                                    residual_diff_threshold=0.5, warmup_steps=2)
    assert tag == native_tag and cached == native_cached and len(cached) > 0
    assert torch.equal(out, native)


def test_steps_mask_bins_and_1x_presets(flux):
    mask = cache_dit.steps_mask(compute_bins=[3, 1, 1], cache_bins=[1, 2])
    assert mask == [1, 1, 1, 0, 1, 0, 0, 1]
    assert cache_dit.steps_mask([3, 1, 1], [1, 2], 6) == mask[:6]
    assert cache_dit.steps_mask("fast", 28) == cache_dit.options.steps_mask("fast", 28)  # ours
    # the 1.x guide's compute counts of its 28-step presets
    counts = {p: sum(cache_dit.steps_mask(mask_policy=p, total_steps=28))
              for p in ("slow", "medium", "fast", "ultra")}
    assert counts == {"slow": 18, "medium": 15, "fast": 11, "ultra": 8}
    assert cache_dit.steps_mask(mask_policy="fast", total_steps=20)[-1] == 1
    assert len(cache_dit.steps_mask(mask_policy="fast", total_steps=20)) == 20
    with pytest.raises(ValueError, match="16-28 steps, got total_steps=50"):
        cache_dit.steps_mask(mask_policy="fast", total_steps=50)
    with pytest.raises(ValueError, match="cover 7 steps, fewer than total_steps=8"):
        cache_dit.steps_mask(compute_bins=[3, 1], cache_bins=[1, 2], total_steps=8)
    # 1.x: warm-up ends with the mask's leading compute run (3 here, not max_warmup_steps=8)
    cache_dit.enable_cache(flux.pipe, cache_config=DBCacheConfig(
        steps_computation_mask=mask, Fn_compute_blocks=1, residual_diff_threshold=0.5))
    out = flux.run(0)
    cached = cache_dit.summary(flux.pipe)[0].cached_steps
    cache_dit.disable_cache(flux.pipe)
    native, native_cached = _native(flux, steps_computation_mask=mask, warmup_steps=3,
                                    Fn_compute_blocks=1, residual_diff_threshold=0.5)
    assert cached == native_cached and len(cached) > 0
    assert torch.equal(out, native)


def test_loose_1x_keywords_map_to_native_names(flux):
    cache_dit.enable_cache(flux.pipe, max_warmup_steps=2, enable_separate_cfg=False,
                           Fn_compute_blocks=1, residual_diff_threshold=0.5)
    tag = cache_dit.summary(flux.pipe)[0].tag
    cache_dit.disable_cache(flux.pipe)
    assert tag == cache_dit.CacheOptions(warmup_steps=2, Fn_compute_blocks=1, residual_diff_threshold=0.5,
                                         do_separate_classifier_free_guidance=False).tag()
    with pytest.raises(ValueError, match="either max_warmup_steps .* or warmup_steps"):
        cache_dit.enable_cache(flux.pipe, max_warmup_steps=2, warmup_steps=3)


@pytest.mark.parametrize("make,message", [
    (lambda p: dict(cache_config=DBCacheConfig(warmup_interval=2)), r"DBCacheConfig.warmup_interval=2"),
    (lambda p: dict(cache_config=DBCacheConfig(steps_computation_policy="static")),
     "steps_computation_policy='static'"),
    (lambda p: dict(cache_config=DBCacheConfig(max_accumulated_residual_diff_threshold=0.3)),
     "max_accumulated_residual_diff_threshold=0.3"),
    (lambda p: dict(cache_config=DBCacheConfig(force_refresh_step_hint=4)), "force_refresh_step_hint=4"),
    (lambda p: dict(cache_config=DBCacheConfig(cache_type="DBPrune")), "cache_type='DBPrune'"),
    (lambda p: dict(calibrator_config=TaylorSeerCalibratorConfig(calibrator_type="foca")),
     "calibrator_type='foca'"),
    (lambda p: dict(calibrator_config=TaylorSeerCalibratorConfig(
        calibrator_kwargs={"skip_interval_steps": 2})), "calibrator_kwargs=.*skip_interval_steps"),
    (lambda p: dict(parallelism_config=object()), "parallelism_config"),
    (lambda p: dict(attention_backend="sage"), "attention_backend"),
    (lambda p: dict(cache_config=DBCacheConfig(Fn_compute_blocks=0)), "Fn_compute_blocks=0 leaves no probe"),
    (lambda p: dict(cache_config=DBCacheConfig(residual_diff_threshold="x")),
     "residual_diff_threshold must be a number"),
    (lambda p: dict(cache_config={"Fn_compute_blocks": 1}), "expected a cache_dit.DBCacheConfig"),
    (lambda p: dict(params_modifiers=[ParamsModifier(), ParamsModifier()]), "params_modifiers"),
])
def test_unsupported_or_invalid_1x_options_raise_naming_them(flux, make, message):
    with pytest.raises((ValueError, TypeError), match=message):
        cache_dit.enable_cache(flux.pipe, **make(flux.pipe))
    with pytest.raises(ValueError, match="not enabled"):  # nothing was touched
        cache_dit.summary(flux.pipe)


def test_block_adapter_options_we_do_not_implement_raise(flux):
    pipe = flux.pipe
    with pytest.raises(ValueError, match="patch_functor"):
        BlockAdapter(pipe=pipe, transformer=pipe.transformer, patch_functor=object())
    with pytest.raises(ValueError, match="dummy_blocks_names"):
        BlockAdapter(pipe=pipe, dummy_blocks_names=["x"])
    with pytest.raises(ValueError, match="BlockAdapter.transformer.*2 transformers"):
        cache_dit.enable_cache(BlockAdapter(pipe=pipe, transformer=[pipe.transformer, pipe.transformer]))
    with pytest.raises(ValueError, match="has no field.*'max_warmup'"):
        DBCacheConfig().reset(max_warmup=2)
    with pytest.raises(ValueError, match="pass cache_config= with it"):
        cache_dit.refresh_context(pipe.transformer, calibrator_config=TaylorSeerCalibratorConfig())


def test_reset_cache_steps_size_a_preset_mask_on_a_bare_transformer(flux):
    tr = flux.pipe.transformer
    options = dict(Fn_compute_blocks=1, residual_diff_threshold=1.0, warmup_steps=1,
                   steps_computation_mask="fast")
    cache_dit.enable_cache(tr, **options)
    try:
        flux.run(0)
        unsized = cache_dit.summary(tr)[0].cached_steps  # the preset needs the step count
        cache_dit.reset_cache(tr, num_inference_steps=flux.steps)
        out = flux.run(0)
        sized = cache_dit.summary(tr)[0].cached_steps
        with pytest.raises(ValueError, match="num_inference_steps must be >= 1, got 0"):
            cache_dit.reset_cache(tr, num_inference_steps=0)
    finally:
        cache_dit.disable_cache(tr)
    cache_dit.enable_cache(tr, num_inference_steps=flux.steps, **options)
    try:
        native = flux.run(0)
        assert cache_dit.summary(tr)[0].cached_steps == sized
    finally:
        cache_dit.disable_cache(tr)
    mask = cache_dit.steps_mask("fast", flux.steps)
    assert len(sized) > 0 and not any(mask[s] for s in sized) and sized != unsized
    assert torch.equal(out, native)
