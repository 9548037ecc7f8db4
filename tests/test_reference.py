"""The shipped Fashion-MNIST reference pipeline: offline loading, determinism, label handling, CFG call pattern."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from cache_dit.reference import FASHION_MNIST_CLASSES, ClassLabelEmbedder, FashionFluxPipeline
from cache_dit.reference.pipeline import REFERENCE_CONFIG_NAME, REFERENCE_WEIGHTS_DIR, REFERENCE_WEIGHTS_NAME

STEPS = 3


@pytest.fixture(scope="module")
def pipe(offline_reference) -> FashionFluxPipeline:
    return offline_reference()


def generate(pipe: FashionFluxPipeline, labels, seed: int = 0, **kwargs) -> np.ndarray:
    kwargs.setdefault("num_inference_steps", STEPS)
    kwargs.setdefault("output_type", "np")
    return pipe(labels, generator=torch.Generator().manual_seed(seed), **kwargs).images


def test_weights_ship_inside_the_package_and_are_small():
    weights = REFERENCE_WEIGHTS_DIR / REFERENCE_WEIGHTS_NAME
    assert weights.is_file() and (REFERENCE_WEIGHTS_DIR / REFERENCE_CONFIG_NAME).is_file()
    assert weights.stat().st_size <= 20 * 1024 * 1024


def test_loads_offline_as_a_flux_pipeline_in_eval_mode(pipe):
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxTransformer2DModel

    assert isinstance(pipe.transformer, FluxTransformer2DModel)
    assert isinstance(pipe.label_embedder, ClassLabelEmbedder)
    assert isinstance(pipe.scheduler, FlowMatchEulerDiscreteScheduler)
    assert len(pipe.transformer.transformer_blocks) > 0 and len(pipe.transformer.single_transformer_blocks) > 0
    assert not pipe.transformer.training and not pipe.label_embedder.training


def test_same_seed_is_bit_identical_and_different_seed_differs(pipe):
    first = generate(pipe, ["Sneaker", "Bag"], seed=1)
    again = generate(pipe, ["Sneaker", "Bag"], seed=1)
    other = generate(pipe, ["Sneaker", "Bag"], seed=2)
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)


def test_class_names_are_case_insensitive_and_match_ids(pipe):
    by_name = generate(pipe, ["ankle BOOT", "t-shirt/top"])
    by_id = generate(pipe, [9, 0])
    np.testing.assert_array_equal(by_name, by_id)
    single = generate(pipe, "Trouser")
    assert single.shape[0] == 1


def test_unknown_class_name_is_rejected_by_name(pipe):
    with pytest.raises(ValueError) as excinfo:
        pipe("Sneakerz", num_inference_steps=1)
    message = str(excinfo.value)
    assert "Sneakerz" in message
    assert all(name in message for name in FASHION_MNIST_CLASSES)
    with pytest.raises(ValueError, match="out of range"):
        pipe(10, num_inference_steps=1)


def test_output_types(pipe):
    pil = pipe([0, 5], num_inference_steps=2, num_images_per_prompt=2, output_type="pil").images
    assert len(pil) == 4 and all(isinstance(im, Image.Image) and im.size == (28, 28) and im.mode == "L" for im in pil)
    array = generate(pipe, [0, 5], num_inference_steps=2)
    assert array.shape == (2, 28, 28, 1) and array.dtype == np.float32
    assert array.min() >= 0.0 and array.max() <= 1.0


@pytest.mark.parametrize(("guidance_scale", "calls_per_step"), [(4.0, 2), (1.0, 1)])
def test_transformer_calls_per_step(pipe, guidance_scale, calls_per_step):
    contexts: list[str] = []
    original_cache_context = pipe.transformer.cache_context

    def recording_cache_context(name, **kwargs):
        contexts.append(name)
        return original_cache_context(name, **kwargs)

    calls = []
    handle = pipe.transformer.register_forward_hook(lambda module, args, output: calls.append(1))
    pipe.transformer.cache_context = recording_cache_context
    try:
        generate(pipe, ["Coat"], num_inference_steps=STEPS, guidance_scale=guidance_scale)
    finally:
        handle.remove()
        del pipe.transformer.cache_context
    assert len(calls) == calls_per_step * STEPS
    expected = ["cond", "uncond"] if calls_per_step == 2 else ["cond"]
    assert contexts == expected * STEPS


def test_callback_on_step_end_sees_latents_and_can_abort(pipe):
    seen = []

    def callback(pipeline, step, timestep, tensors):
        seen.append((step, tensors["latents"].shape))
        if step == 1:
            raise RuntimeError("stop here")
        return {}

    with pytest.raises(RuntimeError, match="stop here"):
        pipe(["Dress"], num_inference_steps=STEPS, callback_on_step_end=callback)
    assert seen == [(0, (1, 49, 16)), (1, (1, 49, 16))]


def test_save_pretrained_round_trip(pipe, tmp_path):
    pipe.save_pretrained(tmp_path)
    reloaded = FashionFluxPipeline.from_pretrained(tmp_path)
    reloaded.set_progress_bar_config(disable=True)
    np.testing.assert_array_equal(generate(pipe, ["Shirt"]), generate(reloaded, ["Shirt"]))


def test_shipped_fid_statistics_load_as_a_symmetric_covariance():
    from cache_dit.reference.fid import TEST_STATS_PATH, load_test_set_statistics

    mu, sigma = load_test_set_statistics(TEST_STATS_PATH)
    assert mu.shape == (2048,) and sigma.shape == (2048, 2048)
    np.testing.assert_array_equal(sigma, sigma.T)
    assert np.all(np.diag(sigma) >= 0)


def test_fid_input_conversion_matches_pil_output(pipe):
    from cache_dit.reference.fid import to_uint8_images

    array = generate(pipe, ["Pullover"], num_inference_steps=2)
    pil = pipe(["Pullover"], num_inference_steps=2, generator=torch.Generator().manual_seed(0)).images
    np.testing.assert_array_equal(to_uint8_images(array)[0][..., 0], np.asarray(pil[0]))
