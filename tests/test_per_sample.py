"""per_sample_decisions: each sample of a batch decides from its own probe; its output equals the
sample run alone with the same options and seed (up to the float differences of batched matmuls)."""

from __future__ import annotations

import pytest
import torch

import cache_dit
from cache_dit.per_sample import ambiguous_input
from cache_dit.testing.tiny_pipelines import CASES

ALONE_TOLERANCE = 1e-4  # batched vs single-sample matmuls on CPU differ by ~1e-6


def _gens(seeds):
    return [torch.Generator().manual_seed(s) for s in seeds]


@pytest.fixture(scope="module")
def reference(offline_reference):
    return offline_reference()


def _ref_run(pipe, labels, seeds):
    with torch.no_grad():
        return pipe(labels, num_inference_steps=20, guidance_scale=2.5, generator=_gens(seeds),
                    output_type="pt").images


def test_reference_batch_decides_per_sample_and_matches_each_sample_alone(reference):
    labels, seeds = [0, 3, 5, 9], [0, 1, 2, 3]
    uncached = _ref_run(reference, labels, seeds)
    options = dict(Fn_compute_blocks=1, warmup_steps=3, residual_diff_threshold=0.15,
                   per_sample_decisions=True)
    cache_dit.enable_cache(reference, **options)
    try:
        batched = _ref_run(reference, labels, seeds)
        streams = cache_dit.summary(reference)[0].streams
        assert set(streams) == {f"{b}[{i}]" for b in ("cond", "uncond") for i in range(4)}
        cached = [streams[f"cond[{i}]"].cached_steps for i in range(4)]
        assert all(cached), "every sample caches something"
        assert len({tuple(c) for c in cached}) > 1, "samples take different decisions"
        for i, (label, seed) in enumerate(zip(labels, seeds)):
            alone = _ref_run(reference, [label], [seed])
            assert cache_dit.summary(reference)[0].streams["cond[0]"].cached_steps == cached[i]
            assert torch.allclose(batched[i:i + 1], alone, atol=ALONE_TOLERANCE)
        assert not torch.equal(batched, uncached)
        cache_dit.enable_cache(reference, **{**options, "residual_diff_threshold": 0.0})
        assert torch.equal(_ref_run(reference, labels, seeds), uncached)
    finally:
        cache_dit.disable_cache(reference)


def test_per_sample_compute_is_counted_per_sample(reference):
    cache_dit.enable_cache(reference, Fn_compute_blocks=1, warmup_steps=3,
                           residual_diff_threshold=0.15, per_sample_decisions=True)
    _ref_run(reference, [0, 3], [0, 1])
    (item,) = cache_dit.summary(reference)
    for stats in item.streams.values():
        cached = len(stats.cached_steps)
        assert stats.blocks_run == (20 - cached) * 6 + cached * 1 and stats.blocks_total == 120
    cache_dit.disable_cache(reference)


def _batched_case_kwargs(case, keys):
    """Two different prompts: the case's embeds and a scaled, shifted copy."""
    kwargs = dict(case.call_kwargs)
    for key in keys:
        value = kwargs[key]
        kwargs[key] = torch.cat([value, value.flip(-1) * 0.7 + 0.1]) if key.endswith(
            "embeds") else torch.cat([value, value])
    return kwargs


@pytest.mark.parametrize("name,keys", [
    ("flux", ["prompt_embeds", "pooled_prompt_embeds"]),
    ("pixart_alpha", ["prompt_embeds", "prompt_attention_mask", "negative_prompt_embeds",
                      "negative_prompt_attention_mask"]),
    ("wan", ["prompt_embeds", "negative_prompt_embeds"]),
])
def test_families_match_each_sample_alone(name, keys):
    case = CASES[name]()
    batched_kwargs = _batched_case_kwargs(case, keys)
    cache_dit.enable_cache(case.pipe, Fn_compute_blocks=1, warmup_steps=1,
                           residual_diff_threshold=0.3, per_sample_decisions=True)
    try:
        with torch.no_grad():
            batched = case.pipe(generator=_gens([0, 1]), return_dict=False, **batched_kwargs)[0]
        streams = cache_dit.summary(case.pipe)[0].streams
        assert any(s.cached_steps for s in streams.values()), "caches something"
        batched = torch.as_tensor(batched).float() if not isinstance(batched, list) else torch.stack(
            [torch.as_tensor(b).float() for b in batched])
        for i in range(2):
            alone_kwargs = {k: (v[i:i + 1] if k in keys else v) for k, v in batched_kwargs.items()}
            with torch.no_grad():
                alone = case.pipe(generator=_gens([i]), return_dict=False, **alone_kwargs)[0]
            alone = torch.as_tensor(alone).float() if not isinstance(alone, list) else torch.stack(
                [torch.as_tensor(b).float() for b in alone])
            assert torch.allclose(batched[i:i + 1], alone, atol=ALONE_TOLERANCE), name
    finally:
        cache_dit.disable_cache(case.pipe)


def test_inputs_of_unclear_batch_dimension_are_named():
    hidden, encoder = torch.zeros(4, 9, 8), torch.zeros(4, 4, 8)  # 4 samples, 4 text tokens
    table = torch.zeros(4, 8)
    assert ambiguous_input((), {"hidden_states": hidden, "extra": table}, hidden, encoder, []) == (
        "extra")
    assert ambiguous_input((), {"temb": table, "image_rotary_emb": (table, table)}, hidden,
                           encoder, []) is None
    assert ambiguous_input((), {"extra": table}, torch.zeros(4, 9, 8), None, []) is None


def test_bad_per_sample_options():
    with pytest.raises(TypeError, match="per_sample_decisions must be True or False"):
        cache_dit.CacheOptions(per_sample_decisions="yes")
    with pytest.raises(ValueError, match="needs cfg_diff_compute_separate=True"):
        cache_dit.CacheOptions(per_sample_decisions=True, cfg_diff_compute_separate=False)
    assert cache_dit.CacheOptions(per_sample_decisions=True).tag().endswith("_PS")


def test_per_sample_budgets_hold_for_every_sample(reference):
    cache_dit.enable_cache(reference, compute_budget=0.5, Fn_compute_blocks=1,
                           per_sample_decisions=True)
    try:
        _ref_run(reference, [0, 3, 5], [0, 1, 2])
        streams = cache_dit.summary(reference)[0].streams
        assert len(streams) == 6
        for stats in streams.values():
            assert stats.cached_steps and abs(stats.blocks_run / stats.blocks_total - 0.5) <= 0.03
    finally:
        cache_dit.disable_cache(reference)
