"""The 16-block "deep" reference model: offline loading, generic discovery, and caching that is exact when off."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import cache_dit
from cache_dit.reference import (
    REFERENCE_VARIANTS,
    FashionFluxPipeline,
    reference_label_embedder_config,
    reference_transformer_config,
    reference_weight_names,
)
from cache_dit.reference.pipeline import REFERENCE_WEIGHTS_DIR
from counting import BlockExecutionCounter, count_linear_calls

BLOCK_LISTS = ("transformer_blocks", "single_transformer_blocks")
STEPS = 28  # the pipeline's default: a real schedule, still well under a second per run here
LABELS = ["Sneaker", "Trouser"]
# A cached run may differ from the uncached one, but on a trained model with these settings only by a little:
# mean absolute pixel error (images in [0, 1]) at most this. Measured with the shipped weights (F1B0, threshold
# 0.15, warmup 3, 28 steps): 14 of 28 steps cached per CFG branch, mean error 0.0056, max 0.11; ~5x headroom.
CACHED_MEAN_ABS_TOLERANCE = 0.03


@pytest.fixture(scope="module")
def pipe(offline_reference) -> FashionFluxPipeline:
    return offline_reference("deep")


def generate(pipe: FashionFluxPipeline, seed: int = 0) -> np.ndarray:
    """Two images with classifier-free guidance (two transformer calls per step), as NHWC floats."""
    return pipe(LABELS, num_inference_steps=STEPS, generator=torch.Generator().manual_seed(seed), output_type="np").images


@pytest.fixture(scope="module")
def uncached(pipe) -> tuple[np.ndarray, BlockExecutionCounter]:
    """The uncached images and a block-execution counter calibrated on that run."""
    cache_dit.disable_cache(pipe)
    with count_linear_calls(pipe.transformer, BLOCK_LISTS) as calibration:
        images = generate(pipe)
    return images, BlockExecutionCounter(pipe.transformer, BLOCK_LISTS, 2 * STEPS, calibration)


def test_deep_weights_and_config_ship_inside_the_package_and_are_small():
    weights_name, config_name = reference_weight_names("deep")
    weights = REFERENCE_WEIGHTS_DIR / weights_name
    assert weights.is_file() and weights.stat().st_size <= 8 * 1024 * 1024
    config = json.loads((REFERENCE_WEIGHTS_DIR / config_name).read_text())
    assert config["variant"] == "deep"
    assert config["transformer"] == json.loads(json.dumps(reference_transformer_config("deep")))
    assert config["label_embedder"] == reference_label_embedder_config()


def test_base_config_is_unchanged_by_the_variants():
    weights_name, config_name = reference_weight_names("base")
    shipped = json.loads((REFERENCE_WEIGHTS_DIR / config_name).read_text())
    assert weights_name == "fashion_flux.safetensors"
    assert shipped["transformer"] == json.loads(json.dumps(reference_transformer_config()))
    assert reference_transformer_config("base") == reference_transformer_config()


def test_unknown_variant_is_rejected_by_name():
    with pytest.raises(ValueError) as excinfo:
        FashionFluxPipeline.from_reference("huge")
    assert "'huge'" in str(excinfo.value)
    assert all(repr(name) in str(excinfo.value) for name in REFERENCE_VARIANTS)
    with pytest.raises(ValueError, match="'cpu'"):
        reference_weight_names("cpu")  # a device passed where the variant goes fails by name too


def test_deep_model_has_at_least_16_blocks_of_both_kinds(pipe):
    double, single = len(pipe.transformer.transformer_blocks), len(pipe.transformer.single_transformer_blocks)
    assert (double, single) == (4, 12)
    assert double + single >= 16
    assert not pipe.transformer.training and not pipe.label_embedder.training


def test_same_seed_is_bit_identical_and_images_are_not_blank(pipe, uncached):
    images, _ = uncached
    np.testing.assert_array_equal(generate(pipe), images)
    assert images.shape == (2, 28, 28, 1)
    assert images.std() > 0.1  # a trained model draws garments, not flat grey


def test_generic_discovery_finds_all_16_blocks(pipe):
    try:
        cache_dit.enable_cache(pipe, Fn_compute_blocks=1, Bn_compute_blocks=0, warmup_steps=2)
        (report,) = cache_dit.summary(pipe)
        assert report.block_lists == {"transformer_blocks": 4, "single_transformer_blocks": 12}
    finally:
        cache_dit.disable_cache(pipe)


def test_threshold_zero_caches_nothing_and_is_bit_identical(pipe, uncached):
    images, counter = uncached
    try:
        cache_dit.enable_cache(pipe, Fn_compute_blocks=1, Bn_compute_blocks=0, residual_diff_threshold=0.0)
        with counter.count() as executions:
            cached = generate(pipe)
        (report,) = cache_dit.summary(pipe)
    finally:
        cache_dit.disable_cache(pipe)
    assert report.cached_steps == []
    assert executions["total"] == counter.num_blocks * 2 * STEPS
    np.testing.assert_array_equal(cached, images)


def test_cached_run_skips_blocks_and_stays_close(pipe, uncached):
    images, counter = uncached
    try:
        cache_dit.enable_cache(
            pipe, Fn_compute_blocks=1, Bn_compute_blocks=0, residual_diff_threshold=0.15, warmup_steps=3
        )
        with counter.count() as executions:
            cached = generate(pipe)
        (report,) = cache_dit.summary(pipe)
    finally:
        cache_dit.disable_cache(pipe)
    assert len(report.cached_steps) >= 4
    # Each cached step of each of the two CFG branches runs only the first of the 16 blocks.
    cached_calls = sum(len(stats.cached_steps) for stats in report.streams.values())
    assert executions["total"] == counter.num_blocks * 2 * STEPS - (counter.num_blocks - 1) * cached_calls
    assert executions["per_block"][0] == 2 * STEPS
    error = float(np.abs(cached - images).mean())
    assert 0.0 < error <= CACHED_MEAN_ABS_TOLERANCE


def test_bench_offers_the_deep_model_with_configs_scaled_to_its_chain():
    from cache_dit.bench.models import build_model

    model = build_model("deep-reference", steps=2, samples=1)
    assert model.name == "deep-reference" and model.num_blocks == 16
    # F8/B8 of FLUX.1's 57 blocks, scaled to 16 blocks and rounded up: 3.
    assert model.default_configs == ["F1B0_R0.08", "F3B0_R0.12", "F1B0_R0.12_T1O2", "F3B3_R0.15"]
    assert build_model("reference", steps=2, samples=1).default_configs[1] == "F2B0_R0.12"
