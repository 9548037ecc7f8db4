"""Decision rules behind the seam: exact arithmetic on toy probes, and on a real pipeline."""

from __future__ import annotations

import pytest
import torch

import cache_dit
from cache_dit.calibrators import make_calibrator
from cache_dit.options import DECISION_RULES
from cache_dit.rules import RULES, AccumulatedChangeRule, ForecastErrorRule, ResidualDiffRule
from flux_fixture import make_flux, run


def _drive(rule, probes: list[torch.Tensor]) -> list[tuple[bool, float | None]]:
    """Feed probes step by step as the controller does (a step caches when the rule says so)."""
    state = rule.new_state()
    out = []
    for step, probe in enumerate(probes):
        parts = rule.parts(state, step, probe)
        if parts is None:
            out.append((False, None))
            rule.on_compute(state, step, probe)
            continue
        cache, stat = rule.decide(state, step, parts.tolist())
        out.append((cache, stat))
        (rule.on_cache if cache else rule.on_compute)(state, step, probe)
    return out


def test_every_user_rule_is_registered():
    assert set(DECISION_RULES) | {"budget"} == set(RULES)


def test_accumulated_change_sums_step_to_step_changes_since_the_last_compute():
    # probes 1, 1.1, 1.0, 1.1, 2.0: step changes 0.1, 0.0909, 0.1, 0.818 (relative to previous)
    probes = [torch.tensor([v]) for v in (1.0, 1.1, 1.0, 1.1, 2.0)]
    decisions = _drive(AccumulatedChangeRule(0.25), probes)
    assert decisions[0] == (False, None)
    assert decisions[1][0] and decisions[1][1] == pytest.approx(0.1)
    assert decisions[2][0] and decisions[2][1] == pytest.approx(0.1 + 0.1 / 1.1)
    # 0.1 + 0.0909 + 0.1 = 0.2909 >= 0.25: compute (DBCache would see |1.1-1|/1 = 0.1 and cache)
    assert not decisions[3][0] and decisions[3][1] == pytest.approx(0.1 + 0.1 / 1.1 + 0.1)
    assert not decisions[4][0] and decisions[4][1] == pytest.approx(0.9 / 1.1)
    assert _drive(ResidualDiffRule(0.25), probes)[3] == (True, pytest.approx(0.1))


def test_forecast_error_with_taylorseer_caches_a_linear_trajectory():
    probes = [torch.tensor([1.0 + 0.5 * step, 2.0 - 0.25 * step]) for step in range(8)]
    rule = ForecastErrorRule(0.01, lambda: make_calibrator("taylorseer", 1))
    decisions = _drive(rule, probes)
    cached = [step for step, (cache, _) in enumerate(decisions) if cache]
    assert cached and all(stat == pytest.approx(0.0, abs=1e-6) for cache, stat in decisions if cache)
    plain = _drive(ResidualDiffRule(0.01), probes)
    assert not any(cache for cache, _ in plain)  # the raw change is ~30% a step: never caches


def test_forecast_error_with_reuse_is_dbcache_bit_for_bit():
    options = dict(Fn_compute_blocks=1, warmup_steps=2, residual_diff_threshold=0.3)
    base, aware = make_flux(), make_flux()
    cache_dit.enable_cache(base, **options)
    cache_dit.enable_cache(aware, decision_rule="forecast_error", **options)
    assert torch.equal(run(base, steps=10), run(aware, steps=10))
    (a,), (b,) = cache_dit.summary(base), cache_dit.summary(aware)
    assert a.cached_steps and a.cached_steps == b.cached_steps
    assert a.residual_diffs == b.residual_diffs
    assert b.tag.endswith("_FE")


@pytest.mark.parametrize("rule", ["accumulated", "forecast_error"])
def test_new_rules_cache_and_stay_close_on_a_pipeline(rule):
    pipe = make_flux()
    uncached = run(pipe, steps=10)
    cache_dit.enable_cache(pipe, decision_rule=rule, Fn_compute_blocks=1, warmup_steps=2,
                           residual_diff_threshold=0.6, enable_taylorseer=True,
                           taylorseer_kwargs={"n_derivatives": 1})
    out = run(pipe, steps=10)
    assert cache_dit.summary(pipe)[0].cached_steps, "caches something"
    assert torch.allclose(out, uncached, atol=0.5) and not torch.equal(out, uncached)


def test_bad_decision_rules():
    with pytest.raises(ValueError, match=r"decision_rule must be one of .*got 'teacache'"):
        cache_dit.CacheOptions(decision_rule="teacache")
    with pytest.raises(ValueError, match="cannot be combined with decision_rule='accumulated'"):
        cache_dit.CacheOptions.from_kwargs(dict(compute_budget=0.5, decision_rule="accumulated"))


@pytest.mark.parametrize("calibrator", ["foca", "hermite", "newton", "taylorseer"])
def test_calibrator_option_stands_in_on_a_pipeline(calibrator):
    pipe = make_flux()
    uncached = run(pipe, steps=10)
    options = dict(Fn_compute_blocks=1, warmup_steps=4, residual_diff_threshold=0.6)
    cache_dit.enable_cache(pipe, **options)
    reused = run(pipe, steps=10)
    cached_steps = cache_dit.summary(pipe)[0].cached_steps
    cache_dit.enable_cache(pipe, calibrator=calibrator, **options)
    forecast = run(pipe, steps=10)
    (item,) = cache_dit.summary(pipe)
    assert item.cached_steps == cached_steps and cached_steps, "same decisions, something cached"
    assert item.tag.endswith(f"_C{calibrator}")
    assert not torch.equal(forecast, reused)  # the stand-in differs from plain reuse
    assert torch.isfinite(forecast).all() and torch.allclose(forecast, uncached, atol=1.0)


def test_bad_calibrator_names_the_allowed_ones():
    with pytest.raises(ValueError, match=r"calibrator must be one of \('reuse', 'taylorseer', "
                                         r"'newton', 'foca', 'hermite'\) or None, got 'dmd'"):
        cache_dit.CacheOptions(calibrator="dmd")
    from cache_dit.calibrators import CALIBRATORS
    from cache_dit.options import CALIBRATOR_NAMES
    assert set(CALIBRATORS) == set(CALIBRATOR_NAMES)


def test_presets_are_fresh_valid_options():
    for name in cache_dit.PRESETS:
        options = cache_dit.preset(name)
        options["compute_budget"] = 0.99  # a fresh dict: editing it changes nothing
        assert cache_dit.PRESETS[name]["compute_budget"] != 0.99
        tag = cache_dit.CacheOptions.from_kwargs(cache_dit.preset(name)).tag()
        # FoCa, damped by 0.9 from 50% kept up (the frontier's damped budgets lose at 30%)
        assert tag.endswith("_Cfoca" if name == "fast" else "_Cfoca_D0.9"), tag
    with pytest.raises(ValueError, match=r"unknown preset 'turbo'; allowed: \['quality', "
                                         r"'balanced', 'fast'\]"):
        cache_dit.preset("turbo")


def test_presets_trade_compute_for_quality_on_the_reference_model():
    from cache_dit.reference import FashionFluxPipeline

    pipe = FashionFluxPipeline.from_reference()
    pipe.set_progress_bar_config(disable=True)

    def generate():
        with torch.no_grad():
            return pipe([1, 6], num_inference_steps=28, guidance_scale=2.5, output_type="pt",
                        generator=[torch.Generator().manual_seed(s) for s in (0, 1)]).images

    uncached = generate()
    kept, error = {}, {}
    for name in ("quality", "balanced", "fast"):
        cache_dit.enable_cache(pipe, **cache_dit.preset(name))
        out = generate()
        (item,) = cache_dit.summary(pipe)
        assert item.cached_steps, f"{name} caches something"
        kept[name], error[name] = item.kept_fraction, float(((out - uncached) ** 2).mean())
        cache_dit.disable_cache(pipe)
    assert kept["quality"] > kept["balanced"] > kept["fast"]
    assert error["quality"] < error["balanced"] < error["fast"]
