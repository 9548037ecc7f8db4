"""calibrator_damping in a real pipeline: on the first cached step, where every earlier step ran
alike, what enters the output layer is exactly reuse + damping * (forecast - reuse)."""

from __future__ import annotations

import pytest
import torch

import cache_dit

MASK = [1, 1, 1, 1, 1, 0, 1, 0]  # FoCa takes slopes from step 3: steps 3 and 4 give it two


@pytest.fixture(scope="module")
def reference(offline_reference):
    return offline_reference()


def _first_cached_input(pipe, **options) -> tuple[torch.Tensor, torch.Tensor, list[set[int]]]:
    """What enters ``norm_out`` on step 5's first call, the images, and each stream's cached steps."""
    seen: list[torch.Tensor] = []
    handle = pipe.transformer.norm_out.register_forward_pre_hook(
        lambda module, args: seen.append(args[0].detach().clone()))
    cache_dit.enable_cache(pipe, Fn_compute_blocks=0, Bn_compute_blocks=0, warmup_steps=0,
                           steps_computation_mask=MASK, **options)
    try:
        with torch.no_grad():
            images = pipe([3], num_inference_steps=len(MASK), guidance_scale=2.5, output_type="pt",
                          generator=torch.Generator().manual_seed(4)).images
        cached = [set(s.cached_steps) for item in cache_dit.summary(pipe) for s in item.streams.values()]
    finally:
        cache_dit.disable_cache(pipe)
        handle.remove()
    return seen[2 * 5], images, cached  # two calls (cond, uncond) per step


def test_damping_mixes_reuse_and_the_forecast_exactly(reference):
    reuse, _, cached = _first_cached_input(reference, calibrator="reuse")
    assert cached == [{5, 7}, {5, 7}]  # both CFG streams cache the steps left out
    forecast, plain_images, _ = _first_cached_input(reference, calibrator="foca")
    mixed, mixed_images, _ = _first_cached_input(reference, calibrator="foca", calibrator_damping=0.25)
    assert (forecast - reuse).abs().max() > 1e-3  # the forecast moves: the test can fail
    assert torch.allclose(mixed, reuse + 0.25 * (forecast - reuse), atol=1e-6, rtol=0)
    assert not torch.equal(mixed_images, plain_images)
    undamped, same_images, _ = _first_cached_input(reference, calibrator="foca", calibrator_damping=1.0)
    assert torch.equal(undamped, forecast) and torch.equal(same_images, plain_images)
