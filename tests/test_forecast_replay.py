"""The replay harness reproduces the library's own cached runs (so its calibrator comparisons hold)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import cache_dit
from cache_dit.bench.forecast import dbcache_patterns, interval_pattern, kept_fraction, replay, replay_hooked
from cache_dit.calibrators.reuse import ReuseCalibrator
from cache_dit.calibrators.taylorseer import TaylorSeerCalibrator

OPTIONS = dict(Fn_compute_blocks=1, Bn_compute_blocks=0, residual_diff_threshold=0.16, warmup_steps=4)


@pytest.fixture(scope="module")
def pipe():
    from cache_dit.reference import FashionFluxPipeline

    pipe = FashionFluxPipeline.from_reference()
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _library(pipe, label, seed, guidance, **options):
    cache_dit.enable_cache(pipe, **options)
    try:
        out = pipe([label], guidance_scale=guidance, output_type="np",
                   generator=torch.Generator().manual_seed(seed)).images[0]
        streams = pipe._cache_dit_session.controllers[0].streams
        cached = [frozenset(streams[b].stats.cached_steps) for b in sorted(streams)]
    finally:
        cache_dit.disable_cache(pipe)
    return out, cached


def test_closed_loop_replay_matches_the_library_taylorseer(pipe):
    label, seed = 7, 0
    out, cached = _library(pipe, label, seed, 2.5, enable_taylorseer=True, **OPTIONS)
    assert all(cached), "nothing was cached"
    result = replay(pipe, [label], [seed], [tuple(cached)],
                    {"today": lambda: TaylorSeerCalibrator(2, derivative_start_step=3)})
    uncached = pipe([label], output_type="np", generator=torch.Generator().manual_seed(seed)).images[0]
    # the replay batches rows, so float rounding differs slightly from the library's calls
    np.testing.assert_allclose(result.uncached_images[0], uncached, atol=5e-5)
    np.testing.assert_allclose(result.images[(0, "today")], out, atol=5e-5)
    assert np.abs(out - uncached).max() > 100 * 5e-5  # caching changed the image, far beyond that


def test_hooked_replay_matches_plain_dbcache_without_cfg(pipe):
    label, seed = 3, 1
    out, cached = _library(pipe, label, seed, 1.0, **OPTIONS)
    assert len(cached) == 1 and cached[0], "one stream, and something was cached"
    assert cached == [frozenset(dbcache_patterns(pipe, [label], [seed], guidance=1.0, **OPTIONS)[0][0])]
    blocks = list(pipe.transformer.transformer_blocks) + list(pipe.transformer.single_transformer_blocks)

    def run(seed, rows):
        latents = pipe.prepare_latents(1, pipe.transformer.dtype, pipe.device,
                                       torch.Generator().manual_seed(seed)).repeat(rows, 1, 1)
        return pipe([label] * rows, guidance_scale=1.0, latents=latents, output_type="pt").images

    uncached, outputs = replay_hooked(blocks, lambda _i, rows: run(seed, rows), cached,
                                      {"reuse": ReuseCalibrator})
    reference = pipe([label], guidance_scale=1.0, output_type="pt",
                     generator=torch.Generator().manual_seed(seed)).images
    torch.testing.assert_close(uncached[0], reference, atol=5e-5, rtol=0)
    torch.testing.assert_close(outputs[(0, "reuse")].permute(0, 2, 3, 1)[0],
                               torch.from_numpy(out), atol=5e-5, rtol=0)


def test_pattern_helpers():
    assert interval_pattern(10, 4, 3) == frozenset({5, 6, 8, 9})
    with pytest.raises(ValueError, match="interval and warmup must be >= 1, got 0 and 4"):
        interval_pattern(10, 4, 0)
    # 6 blocks, F1: a cached step keeps 1 of 6; two branches of 10 steps with 2 and 4 cached
    pattern = (frozenset({1, 2}), frozenset({1, 2, 3, 4}))
    assert kept_fraction(pattern, 10, 6, 1) == pytest.approx((8 * 6 + 2 + 6 * 6 + 4) / 120)
