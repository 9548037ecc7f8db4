"""The tag codec: every tag CacheOptions.tag() emits parses back to the same options."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cache_dit import CacheOptions
from cache_dit.bench.configs import parse_config
from cache_dit.tags import parse_tag, tag_options

_THRESHOLDS = st.one_of(st.floats(0, 2, allow_nan=False, allow_infinity=False),
                        st.sampled_from([0.0, 0.08, 0.12, 1e9, 1 / 3]))


@st.composite
def valid_options(draw) -> CacheOptions:
    bn = draw(st.integers(0, 6))
    steps = draw(st.one_of(st.none(), st.integers(1, 12)))
    mask = draw(st.one_of(
        st.none(), st.sampled_from(["slow", "medium", "fast", "ultra"]),
        st.lists(st.integers(0, 1), min_size=steps or 1, max_size=steps or 12)))
    budget = draw(st.one_of(st.none(), st.floats(0.01, 1.0), st.just(0.5)))
    per_sample = draw(st.booleans())
    return CacheOptions(
        compute_budget=budget,
        decision_rule="residual_diff" if budget is not None else draw(
            st.sampled_from(["residual_diff", "accumulated", "forecast_error"])),
        Fn_compute_blocks=draw(st.integers(1, 12)),
        Bn_compute_blocks=bn,
        Bn_compute_blocks_ids=draw(st.one_of(
            st.none(), st.lists(st.integers(0, bn - 1), max_size=bn, unique=True))) if bn else None,
        non_compute_blocks_diff_threshold=draw(_THRESHOLDS),
        residual_diff_threshold=0.12 if budget is not None else draw(_THRESHOLDS),
        warmup_steps=draw(st.integers(0, 30)),
        max_cached_steps=-1 if budget is not None else draw(st.integers(-1, 30)),
        max_continuous_cached_steps=draw(st.integers(-1, 5)),
        steps_computation_mask=mask,
        enable_taylorseer=draw(st.booleans()),
        enable_encoder_taylorseer=draw(st.booleans()),
        taylorseer_cache_type=draw(st.sampled_from(["residual", "hidden_states"])),
        taylorseer_kwargs={"n_derivatives": draw(st.integers(1, 4))},
        do_separate_classifier_free_guidance=draw(st.sampled_from([None, True, False])),
        cfg_compute_first=draw(st.booleans()),
        cfg_diff_compute_separate=per_sample or draw(st.booleans()),
        per_sample_decisions=per_sample,
        calibrator=draw(st.sampled_from([None, "reuse", "taylorseer", "newton", "foca", "hermite"])),
        calibrator_damping=draw(st.sampled_from([1.0, 0.9, 0.85, 0.5, 1e-3])),
        num_inference_steps=steps,
    )


@settings(max_examples=300, deadline=None)
@given(options=valid_options())
def test_every_tag_parses_back_to_the_same_options(options):
    tag = options.tag()
    back = parse_tag(tag)
    assert dataclasses.asdict(back) == dataclasses.asdict(options), tag
    assert back.tag() == tag
    assert parse_config(tag).tag == tag  # cache-dit-bench --config reads it


def test_known_tags_and_short_forms():
    assert CacheOptions().tag() == "DBCache_F8B0_W8_MC-1_R0.12"
    mask = [1, 1, 0, 0, 1, 0, 1, 1]
    options = CacheOptions(steps_computation_mask=mask, num_inference_steps=8)
    assert options.tag() == "DBCache_F8B0_W8_MC-1_R0.12_M11001011_N8"
    assert parse_tag("F1B0_R0.08_T1O2") == CacheOptions(
        Fn_compute_blocks=1, residual_diff_threshold=0.08, enable_taylorseer=True,
        enable_encoder_taylorseer=True)
    assert tag_options("DBCache_F2B4_BnIds") == {
        "cache_type": CacheOptions().cache_type, "Fn_compute_blocks": 2, "Bn_compute_blocks": 4,
        "Bn_compute_blocks_ids": []}
    assert CacheOptions(residual_diff_threshold=1 / 3).tag().endswith("R0.3333333333333333")


@pytest.mark.parametrize("tag,message", [
    ("F1B0_X3", "token 'X3' is not understood"),
    ("", "non-empty"),
    ("F1B0_R-0.1", "residual_diff_threshold must be"),
    ("F1B0_M012", "token 'M012' is not understood"),
    ("F1B0_Mturbo", "token 'Mturbo' is not understood"),
])
def test_bad_tags_name_the_token(tag, message):
    with pytest.raises(ValueError, match=message):
        parse_tag(tag)
