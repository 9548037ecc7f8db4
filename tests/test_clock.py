"""The generation clock patches nothing and follows what the pipeline does: schedulers swapped or
shared, aborted calls, deep copies, step-count options, masks of the wrong length, side-branch
block lists (WanVACE)."""

from __future__ import annotations

import copy
import logging

import diffusers
import pytest
import torch
from PIL import Image

import cache_dit
from flux_fixture import make_flux, run

# Random weights change a lot between steps: a huge threshold caches every step the gates allow.
ALWAYS = dict(Fn_compute_blocks=1, Bn_compute_blocks=0, residual_diff_threshold=1e9, warmup_steps=1)


def _main(pipe) -> cache_dit.CacheSummary:
    (item,) = cache_dit.summary(pipe)
    return item.streams["main"]


def _fresh_cached_run(steps: int, **options) -> tuple[torch.Tensor, list[int]]:
    pipe = make_flux()
    cache_dit.enable_cache(pipe, **options)
    out = run(pipe, steps=steps)
    return out, _main(pipe).cached_steps


def test_enable_replaces_no_attribute_of_the_scheduler():
    plain, cached = make_flux(), make_flux()
    cache_dit.enable_cache(cached, **ALWAYS)
    run(plain, steps=4)
    run(cached, steps=4)
    assert _main(cached).cached_steps
    assert set(vars(cached.scheduler)) == set(vars(plain.scheduler))
    assert not any(callable(value) for value in vars(cached.scheduler).values())


def test_swapped_scheduler_gets_its_own_step_count_and_mask():
    pipe = make_flux()
    cache_dit.enable_cache(pipe, steps_computation_mask="fast", **ALWAYS)
    run(pipe, steps=8)
    pipe.scheduler = diffusers.FlowMatchEulerDiscreteScheduler.from_config(pipe.scheduler.config)
    out = run(pipe, steps=12)
    stats = _main(pipe)
    mask = cache_dit.steps_mask("fast", 12)
    assert stats.steps == 12 and stats.cached_steps, "caches something"
    assert all(mask[step] == 0 for step in stats.cached_steps)
    assert 11 not in stats.cached_steps  # the 12-step mask's last step computes
    expected, expected_steps = _fresh_cached_run(12, steps_computation_mask="fast", **ALWAYS)
    assert stats.cached_steps == expected_steps
    assert torch.equal(out, expected)


def test_call_aborted_then_scheduler_swapped_starts_a_new_generation():
    pipe = make_flux()
    cache_dit.enable_cache(pipe, **ALWAYS)

    def abort(pipeline, step, timestep, callback_kwargs):
        if step == 2:
            raise KeyboardInterrupt("user stopped")
        return callback_kwargs

    with pytest.raises(KeyboardInterrupt):
        run(pipe, steps=9, callback_on_step_end=abort)
    pipe.scheduler = diffusers.FlowMatchEulerDiscreteScheduler.from_config(pipe.scheduler.config)
    out = run(pipe, steps=8)
    assert _main(pipe).steps == 8
    expected, expected_steps = _fresh_cached_run(8, **ALWAYS)
    assert _main(pipe).cached_steps == expected_steps and expected_steps
    assert torch.equal(out, expected)


def test_aborted_call_with_the_same_scheduler_starts_afresh():
    pipe = make_flux()
    cache_dit.enable_cache(pipe, **ALWAYS)

    def abort(pipeline, step, timestep, callback_kwargs):
        if step == 2:
            raise RuntimeError("stop")
        return callback_kwargs

    with pytest.raises(RuntimeError, match="stop"):
        run(pipe, steps=9, callback_on_step_end=abort)
    out = run(pipe, steps=8)
    expected, _ = _fresh_cached_run(8, **ALWAYS)
    assert _main(pipe).steps == 8
    assert torch.equal(out, expected)


@pytest.mark.parametrize("disable_first", ["first", "second"])
def test_one_scheduler_shared_by_two_cached_pipelines(disable_first):
    one, two = make_flux(), make_flux(seed=1)
    two.scheduler = one.scheduler
    options = dict(steps_computation_mask="fast", **ALWAYS)
    cache_dit.enable_cache(one, **options)
    cache_dit.enable_cache(two, **options)
    run(one, steps=8)
    run(two, steps=12)
    cache_dit.disable_cache(one if disable_first == "first" else two)
    still = two if disable_first == "first" else one
    steps = 12 if still is two else 8
    out = run(still, steps=steps)
    reference = make_flux(seed=1 if still is two else 0)
    cache_dit.enable_cache(reference, **options)
    expected = run(reference, steps=steps)
    assert _main(still).steps == steps and _main(still).cached_steps
    assert _main(still).cached_steps == _main(reference).cached_steps
    assert torch.equal(out, expected)


def test_deep_copy_of_a_cached_pipeline_runs_and_is_independent():
    pipe = make_flux()
    cache_dit.enable_cache(pipe, **ALWAYS)
    expected = run(pipe, steps=6)
    clone = copy.deepcopy(pipe)
    assert torch.equal(run(clone, steps=6), expected)
    assert _main(clone).cached_steps, "the copy caches too"
    with torch.no_grad():
        clone.transformer.proj_out.weight.mul_(0.5)  # the copy has its own weights...
    assert not torch.equal(run(clone, steps=6), expected)
    assert torch.equal(run(pipe, steps=6), expected)  # ...and its own cache
    assert _main(pipe).steps == 6
    cache_dit.disable_cache(clone)
    assert torch.equal(run(pipe, steps=6), expected)
    assert _main(pipe).cached_steps


def test_deep_copy_then_disable_gives_the_uncached_output():
    pipe = make_flux()
    uncached = run(pipe, steps=6)
    cache_dit.enable_cache(pipe, **ALWAYS)
    run(pipe, steps=6)
    clone = copy.deepcopy(pipe)
    cache_dit.disable_cache(clone)
    assert torch.equal(run(clone, steps=6), uncached)
    assert not torch.equal(run(pipe, steps=6), uncached)


def test_num_inference_steps_on_a_pipeline_yields_to_the_scheduler(caplog):
    pipe = make_flux()
    cache_dit.enable_cache(pipe, num_inference_steps=8, **ALWAYS)
    with caplog.at_level(logging.WARNING, logger="cache_dit"):
        out = run(pipe, steps=12)
    assert "num_inference_steps=8 is ignored" in caplog.text and "runs 12 steps" in caplog.text
    assert _main(pipe).steps == 12  # no reset at step 8
    expected, expected_steps = _fresh_cached_run(12, **ALWAYS)
    assert _main(pipe).cached_steps == expected_steps
    assert torch.equal(out, expected)


def test_disable_on_the_transformer_of_a_cached_pipeline_names_the_owner():
    pipe = make_flux()
    cache_dit.enable_cache(pipe, **ALWAYS)
    with pytest.raises(ValueError, match="enabled through FluxPipeline.*'transformer'"):
        cache_dit.disable_cache(pipe.transformer)
    run(pipe, steps=4)
    assert _main(pipe).cached_steps  # still on


def test_mask_of_the_wrong_length_is_rejected_before_any_block_runs():
    with pytest.raises(ValueError, match="3 entries but num_inference_steps is 8"):
        cache_dit.CacheOptions(steps_computation_mask=[1, 0, 1], num_inference_steps=8)
    pipe = make_flux()
    cache_dit.enable_cache(pipe, steps_computation_mask=[1, 0, 1], **ALWAYS)
    calls = []
    handle = pipe.transformer.transformer_blocks[0].register_forward_pre_hook(
        lambda *_: calls.append(1))
    with pytest.raises(ValueError, match="3 entries but this generation of transformer has 8 steps"):
        run(pipe, steps=8)
    handle.remove()
    assert calls == []


def test_custom_loop_after_a_pipeline_call_is_placed_by_its_timesteps():
    """After a pipeline call ended, its scheduler's state is stale: direct transformer calls are
    placed by their timesteps (here: two steps, each called twice as cond/uncond)."""
    pipe = make_flux()
    cache_dit.enable_cache(pipe, **ALWAYS)
    run(pipe, steps=4)
    transformer = pipe.transformer
    controller = pipe._cache_dit_session.controllers[0]
    torch.manual_seed(0)
    inputs = dict(hidden_states=torch.randn(1, 16, 16), encoder_hidden_states=torch.randn(1, 7, 32),
                  pooled_projections=torch.randn(1, 32), txt_ids=torch.zeros(7, 3),
                  img_ids=torch.zeros(16, 3))
    with torch.no_grad():
        for t in (1.0, 1.0, 0.5, 0.5):
            transformer(timestep=torch.tensor([t]), **inputs)
    assert controller.clock.step == 1 and controller.clock.max_branches == 2


# ---------------------------------------------------------------------------- side branches
def _wan_vace():
    torch.manual_seed(0)
    transformer = diffusers.WanVACETransformer3DModel(
        patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=12, in_channels=16,
        out_channels=16, text_dim=32, freq_dim=256, ffn_dim=32, num_layers=3, cross_attn_norm=True,
        qk_norm="rms_norm_across_heads", rope_max_seq_len=32, vace_layers=[0, 2],
        vace_in_channels=96).eval()
    vae = diffusers.AutoencoderKLWan(base_dim=3, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
                                     temperal_downsample=[False, True, True]).eval()
    pipe = diffusers.WanVACEPipeline(
        tokenizer=None, text_encoder=None, vae=vae, transformer=transformer,
        scheduler=diffusers.FlowMatchEulerDiscreteScheduler(shift=7.0))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _run_vace(pipe, steps: int = 6) -> torch.Tensor:
    embeds = torch.randn(1, 8, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        return pipe(video=[Image.new("RGB", (16, 16))] * 9, mask=[Image.new("L", (16, 16), 0)] * 9,
                    prompt_embeds=embeds, negative_prompt_embeds=embeds * 0.5, height=16, width=16,
                    num_frames=9, num_inference_steps=steps, guidance_scale=5.0,
                    generator=torch.Generator().manual_seed(0), output_type="latent").frames


def test_wan_vace_side_branch_stays_out_of_the_chain():
    pipe = _wan_vace()
    uncached = _run_vace(pipe)
    cache_dit.enable_cache(pipe)  # no arguments
    (item,) = cache_dit.summary(pipe)
    assert item.block_lists == {"blocks": 3}
    assert torch.equal(_run_vace(pipe), uncached)  # defaults: warmup 8 > 6 steps, nothing cached
    cache_dit.enable_cache(pipe, Fn_compute_blocks=1, warmup_steps=1, residual_diff_threshold=0.5)
    cached = _run_vace(pipe)
    assert cache_dit.summary(pipe)[0].streams["cond"].cached_steps, "caches something"
    assert torch.allclose(cached, uncached, atol=0.1)
    assert not torch.equal(cached, uncached)
