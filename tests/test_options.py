"""Option validation, tags, YAML loading, helpers; property-based fuzzing of options."""

from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import cache_dit
from cache_dit import CacheOptions
from flux_fixture import make_flux, run

BAD_OPTIONS = [
    (dict(Fn_compute_block=1), ValueError, "Unknown cache option.*Fn_compute_block"),
    (dict(Fn_compute_blocks=-1), ValueError, "Fn_compute_blocks must be >= 0, got -1"),
    (dict(Fn_compute_blocks=0), ValueError, "Fn_compute_blocks=0 leaves no probe to decide from"),
    (dict(Fn_compute_blocks=0, compute_budget=0.5, per_sample_decisions=True), ValueError,
     "per_sample_decisions=True needs Fn_compute_blocks >= 1"),
    (dict(Fn_compute_blocks=0, steps_computation_mask="fast", decision_rule="accumulated"),
     ValueError, "decision_rule='accumulated' needs Fn_compute_blocks >= 1"),
    (dict(Fn_compute_blocks=1.5), TypeError, "Fn_compute_blocks must be an int"),
    (dict(Fn_compute_blocks=True), TypeError, "Fn_compute_blocks must be an int"),
    (dict(Bn_compute_blocks=-1), ValueError, "Bn_compute_blocks must be >= 0, got -1"),
    (dict(warmup_steps=-2), ValueError, "warmup_steps must be >= 0"),
    (dict(max_cached_steps=-2), ValueError, "max_cached_steps must be >= -1"),
    (dict(max_continuous_cached_steps="3"), TypeError, "max_continuous_cached_steps must be an int"),
    (dict(residual_diff_threshold=-0.1), ValueError, "residual_diff_threshold must be"),
    (dict(residual_diff_threshold=float("nan")), ValueError, "residual_diff_threshold must be"),
    (dict(residual_diff_threshold="0.1"), TypeError, "residual_diff_threshold must be a number"),
    (dict(non_compute_blocks_diff_threshold=-1), ValueError, "non_compute_blocks_diff_threshold"),
    (dict(Bn_compute_blocks=4, Bn_compute_blocks_ids=[0, 4]), ValueError,
     r"Bn_compute_blocks_ids entry 4 is outside \[0, Bn_compute_blocks=4\)"),
    (dict(Bn_compute_blocks=4, Bn_compute_blocks_ids=[-1]), ValueError, "entry must be >= 0"),
    (dict(Bn_compute_blocks_ids="0,1"), TypeError, "Bn_compute_blocks_ids must be a list"),
    (dict(cache_type="FBCache"), ValueError, "cache_type 'FBCache' is not supported"),
    (dict(taylorseer_cache_type="features"), ValueError,
     r"taylorseer_cache_type must be one of \('residual', 'hidden_states'\), got 'features'"),
    (dict(taylorseer_kwargs={"n_derivatives": 0}), ValueError, "n_derivatives.*must be >= 1"),
    (dict(taylorseer_kwargs={"order": 2}), ValueError, r"Unknown taylorseer_kwargs \['order'\]"),
    (dict(taylorseer_kwargs=2), TypeError, "taylorseer_kwargs must be a dict"),
    (dict(enable_taylorseer="yes"), TypeError, "enable_taylorseer must be True or False"),
    (dict(do_separate_classifier_free_guidance=1), TypeError,
     "do_separate_classifier_free_guidance must be True, False or None"),
    (dict(steps_computation_mask="turbo"), ValueError, "preset 'turbo' is unknown"),
    (dict(steps_computation_mask=[1, 2]), ValueError, "0/1 per step"),
    (dict(num_inference_steps=0), ValueError, "num_inference_steps must be >= 1"),
    (dict(calibrator_damping=0), ValueError, r"calibrator_damping must be in \(0, 1\].*got 0"),
    (dict(calibrator_damping=1.2), ValueError, r"calibrator_damping must be in \(0, 1\].*got 1.2"),
    (dict(calibrator_damping=float("nan")), ValueError, "calibrator_damping must be in .*got nan"),
    (dict(calibrator_damping="0.9"), TypeError, "calibrator_damping must be a number in"),
]


@pytest.mark.parametrize("options,error,message", BAD_OPTIONS)
def test_bad_options_name_the_value_and_what_is_allowed(options, error, message):
    with pytest.raises(error, match=message):
        CacheOptions.from_kwargs(options)


def test_bad_enable_cache_arguments():
    pipe = make_flux(double=1, single=2)
    with pytest.raises(TypeError, match="needs a diffusers pipeline or a torch.nn.Module"):
        cache_dit.enable_cache("flux")
    with pytest.raises(TypeError, match="return_hidden_states_first must be"):
        cache_dit.enable_cache(pipe, return_hidden_states_first="no")
    with pytest.raises(TypeError, match="forward_pattern must be a cache_dit.ForwardPattern"):
        cache_dit.enable_cache(pipe, forward_pattern="Pattern_0")
    with pytest.raises(TypeError, match="blocks= must be a non-empty torch.nn.ModuleList"):
        cache_dit.enable_cache(pipe, transformer=pipe.transformer, blocks=[1, 2])
    with pytest.raises(ValueError, match="is not a submodule"):
        cache_dit.enable_cache(pipe, transformer=pipe.transformer,
                               blocks=torch.nn.ModuleList([torch.nn.Linear(2, 2)]))
    with pytest.raises(ValueError, match="no component with recognisable transformer blocks"):
        cache_dit.enable_cache(type("Pipe", (), {"components": {"vae": pipe.vae}})())
    with pytest.raises(ValueError, match="has no recognisable transformer block list"):
        cache_dit.enable_cache(torch.nn.Sequential(torch.nn.Linear(2, 2)))
    with pytest.raises(ValueError, match="cache is not enabled"):
        cache_dit.summary(pipe)
    assert not hasattr(pipe, "_cache_dit_session")


def test_default_options_match_the_spec():
    options = cache_dit.default_options()
    assert options["cache_type"] == cache_dit.DBCache
    assert (options["Fn_compute_blocks"], options["Bn_compute_blocks"]) == (8, 0)
    assert options["warmup_steps"] == 8 and options["max_cached_steps"] == -1
    assert options["residual_diff_threshold"] == 0.12
    assert options["taylorseer_kwargs"] == {"n_derivatives": 2}
    options["taylorseer_kwargs"]["n_derivatives"] = 5  # a copy: editing it changes nothing
    assert cache_dit.default_options()["taylorseer_kwargs"] == {"n_derivatives": 2}
    assert CacheOptions.from_kwargs(cache_dit.default_options()).tag() == (
        "DBCache_F8B0_W8_MC-1_R0.12")


def test_tags_name_every_setting():
    options = CacheOptions.from_kwargs(dict(
        Fn_compute_blocks=1, Bn_compute_blocks=4, Bn_compute_blocks_ids=[0, 2], warmup_steps=3,
        residual_diff_threshold=0.08, max_continuous_cached_steps=2,
        steps_computation_mask="fast", enable_taylorseer=True, enable_encoder_taylorseer=True,
        taylorseer_kwargs={"n_derivatives": 1}, do_separate_classifier_free_guidance=True,
        cfg_diff_compute_separate=False))
    assert options.tag() == (
        "DBCache_F1B4_W3_MC-1_R0.08_BnIds0-2_NR0.08_MCC2_Mfast_T1E1O1_CFG1_CFGD0")


def test_block_range_and_steps_mask():
    assert cache_dit.block_range(0, 16, 2) == [0, 2, 4, 6, 8, 10, 12, 14]
    with pytest.raises(ValueError, match="step must be >= 1"):
        cache_dit.block_range(0, 4, 0)
    for steps in (28, 50):
        computed = [sum(cache_dit.steps_mask(p, steps)) for p in ("slow", "medium", "fast", "ultra")]
        assert computed == sorted(computed, reverse=True)  # slower presets compute more
        assert all(m[0] == 1 and m[-1] == 1 for m in
                   (cache_dit.steps_mask(p, steps) for p in cache_dit.STEPS_MASK_PRESETS))
    assert cache_dit.steps_mask("fast", 28) == [
        1, 1, 1, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1]
    with pytest.raises(ValueError, match="unknown policy 'x'"):
        cache_dit.steps_mask("x", 28)


def test_load_options_yaml(tmp_path):
    path = tmp_path / "cache.yaml"
    path.write_text("Fn_compute_blocks: 1\nresidual_diff_threshold: 0.08\nenable_taylorseer: true\n")
    assert cache_dit.load_options(path) == {
        "Fn_compute_blocks": 1, "residual_diff_threshold": 0.08, "enable_taylorseer": True}
    path.write_text("Fn_compute_block: 1\n")
    with pytest.raises(ValueError, match="Unknown cache option"):
        cache_dit.load_options(path)
    path.write_text("- 1\n")
    with pytest.raises(ValueError, match="must hold a mapping"):
        cache_dit.load_options(path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        cache_dit.load_options(tmp_path / "missing.yaml")
    head = "Fn_compute_blocks: 1\n# caf"
    path.write_bytes(f"{head}é\n".encode("latin-1"))  # é is byte 0xe9, which is not UTF-8
    with pytest.raises(ValueError, match=rf"cache.yaml' is not UTF-8 text \(byte 0xe9 at offset {len(head)}\)") as error:
        cache_dit.load_options(path)
    assert not isinstance(error.value, UnicodeDecodeError) and str(path) in str(error.value)


OPTION_VALUES = st.fixed_dictionaries({}, optional={
    "Fn_compute_blocks": st.integers(-1, 8),
    "Bn_compute_blocks": st.integers(-1, 6),
    "warmup_steps": st.integers(-1, 10),
    "max_cached_steps": st.integers(-2, 6),
    "max_continuous_cached_steps": st.integers(-2, 3),
    "residual_diff_threshold": st.one_of(st.floats(-0.5, 2.0), st.just(1e9)),
    "enable_taylorseer": st.booleans(),
    "enable_encoder_taylorseer": st.booleans(),
    "taylorseer_cache_type": st.sampled_from(["residual", "hidden_states", "bad"]),
    "taylorseer_kwargs": st.fixed_dictionaries({"n_derivatives": st.integers(0, 3)}),
    "steps_computation_mask": st.one_of(st.none(), st.sampled_from(["slow", "fast", "bogus"]),
                                       st.lists(st.integers(0, 1), min_size=8, max_size=8)),
})


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(options=OPTION_VALUES)
def test_fuzzed_options_either_fail_cleanly_or_respect_every_limit(options):
    pipe = make_flux(double=1, single=3)
    steps = 8
    try:
        cache_dit.enable_cache(pipe, **options)
    except (ValueError, TypeError) as exc:
        assert str(exc)  # a message, and the pipeline is untouched
        assert not hasattr(pipe, "_cache_dit_session")
        return
    out = run(pipe, steps=steps, size=16)
    assert torch.isfinite(out).all()
    (stats,) = cache_dit.summary(pipe)
    effective = CacheOptions.from_kwargs(options)
    cached = stats.cached_steps
    assert all(step >= effective.warmup_steps for step in cached)
    if effective.max_cached_steps >= 0:
        assert len(cached) <= effective.max_cached_steps
    if effective.max_continuous_cached_steps >= 0:
        run_length = 0
        for step in range(steps):
            run_length = run_length + 1 if step in cached else 0
            assert run_length <= effective.max_continuous_cached_steps
    mask = effective.compute_mask(steps)
    if mask is not None:
        assert not any(step < len(mask) and mask[step] for step in cached)
    if effective.Fn_compute_blocks == 0:  # no probe: nothing is measured, the mask decides
        assert stats.residual_diffs == {}
    else:
        for step in cached:
            assert stats.residual_diffs[step] < effective.residual_diff_threshold
    cache_dit.disable_cache(pipe)
