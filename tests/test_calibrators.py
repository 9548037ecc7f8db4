"""Calibrators' exact arithmetic on toy inputs: polynomials, irregular gaps, start-up, bad input."""

from __future__ import annotations

import pytest
import torch

from cache_dit.calibrators.base import Calibrator
from cache_dit.calibrators.foca import FoCaCalibrator
from cache_dit.calibrators.hermite import HermiteCalibrator, hermite
from cache_dit.calibrators.newton import NewtonCalibrator
from cache_dit.calibrators.reuse import ReuseCalibrator
from cache_dit.calibrators.taylorseer import TaylorSeerCalibrator
from cache_dit.calibrators.newton import NewtonPolynomial as TaylorSeer

ALL = [ReuseCalibrator, TaylorSeerCalibrator, NewtonCalibrator, FoCaCalibrator, HermiteCalibrator]


def t(x: float) -> torch.Tensor:
    return torch.tensor(float(x), dtype=torch.float64)


def feed(calibrator, points: dict[int, float]):
    for step, value in points.items():
        calibrator.update(step, t(value))
    return calibrator


@pytest.mark.parametrize("cls", ALL)
def test_protocol_ready_reset_and_bad_use(cls):
    calibrator = cls()
    assert isinstance(calibrator, Calibrator)
    assert not calibrator.ready
    with pytest.raises(RuntimeError, match=r"approximate\(3\) called before any update"):
        calibrator.approximate(3)
    calibrator.update(2, t(1.0))
    assert calibrator.ready
    if cls is ReuseCalibrator:  # a stream shared by two calls of one step: replace, read back
        calibrator.update(2, t(3.0))
        assert calibrator.approximate(2).item() == 3.0
        with pytest.raises(ValueError, match="step 1 does not follow the last updated step 2"):
            calibrator.update(1, t(1.0))
        with pytest.raises(ValueError, match="step 1 must come after the last updated step 2"):
            calibrator.approximate(1)
    else:
        with pytest.raises(ValueError, match="step 2 does not follow the last updated step 2"):
            calibrator.update(2, t(1.0))
        with pytest.raises(ValueError, match="step 2 must come after the last updated step 2"):
            calibrator.approximate(2)
    with pytest.raises(ValueError, match=r"step must be an int >= 0, got -1"):
        calibrator.update(-1, t(1.0))
    with pytest.raises(ValueError, match=r"step must be an int >= 0, got 2.5"):
        calibrator.approximate(2.5)
    with pytest.raises(TypeError, match="value must be a torch.Tensor, got float"):
        calibrator.update(5, 1.0)
    calibrator.reset()
    assert not calibrator.ready
    calibrator.update(0, t(4.0))  # after reset, steps start again
    assert calibrator.approximate(1).item() == 4.0  # one point: every calibrator holds it


@pytest.mark.parametrize("make, message", [
    (lambda: TaylorSeerCalibrator(order=0), "TaylorSeerCalibrator order must be an int >= 1, got 0"),
    (lambda: TaylorSeerCalibrator(order=True), "order must be an int >= 1, got True"),
    (lambda: TaylorSeerCalibrator(derivative_start_step=-1), "derivative_start_step must be an int >= 0, got -1"),
    (lambda: TaylorSeerCalibrator(gaps="mean"), r"gaps must be one of \('latest', 'span'\), got 'mean'"),
    (lambda: NewtonCalibrator(order=1.0), "NewtonCalibrator order must be an int >= 1, got 1.0"),
    (lambda: NewtonCalibrator(derivative_start_step="3"), "derivative_start_step must be an int >= 0, got '3'"),
    (lambda: HermiteCalibrator(sigma=0), r"sigma must be a number in \(0, 1\], got 0"),
    (lambda: HermiteCalibrator(sigma=1.5), r"sigma must be a number in \(0, 1\], got 1.5"),
    (lambda: HermiteCalibrator(order=0), "TaylorSeerCalibrator order must be an int >= 1, got 0"),
    (lambda: FoCaCalibrator(horizon=0), "horizon must be a finite number > 0 or None, got 0"),
    (lambda: FoCaCalibrator(horizon=float("inf")), "horizon must be a finite number > 0 or None, got inf"),
    (lambda: FoCaCalibrator(per_step_slopes=1), "per_step_slopes must be True or False, got 1"),
    (lambda: FoCaCalibrator(derivative_start_step=2.0), "derivative_start_step must be an int >= 0, got 2.0"),
])
def test_bad_constructor_arguments(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_reuse_returns_the_newest_computed_value():
    reuse = feed(ReuseCalibrator(), {0: 1.0, 3: 5.0})
    assert reuse.approximate(4).item() == 5.0 and reuse.approximate(9).item() == 5.0


def test_taylor_is_the_spec_formula_on_equal_gaps_not_newton():
    # t^3 at steps 4, 6, 8 (N = 2), forecast step 9 (k = 1): the spec's
    # F + dF k / N + d2F k^2 / (2 N^2) = 512 + 296/2 + 144/8 = 678; Newton (exact for quadratics) 714.
    points = {4: 64.0, 6: 216.0, 8: 512.0}
    taylor = feed(TaylorSeerCalibrator(2, derivative_start_step=0), points)
    assert taylor.approximate(9).item() == 678.0
    assert feed(NewtonCalibrator(2), points).approximate(9).item() == 714.0
    # k = 3 steps ahead: 512 + 148 * 3 + 36 * 9 / 2
    assert taylor.approximate(11).item() == 512.0 + 148.0 * 3 + 36.0 * 9 / 2


def test_taylor_irregular_gaps_latest_vs_span():
    # t^2 at steps 2, 3, 6; first derivatives 5 (over 2..3) and 9 (over 3..6).
    points = {2: 4.0, 3: 9.0, 6: 36.0}
    latest = feed(TaylorSeerCalibrator(2, derivative_start_step=0), points)
    span = feed(TaylorSeerCalibrator(2, derivative_start_step=0, gaps="span"), points)
    # latest (cache-dit): d2 = (9 - 5) / 3; span: stencil centres 2.5 and 4.5, d2 = (9 - 5) / 2 = 2
    assert latest.derivatives[2].item() == pytest.approx(4.0 / 3.0, rel=1e-15)
    assert span.derivatives[2].item() == 2.0
    assert latest.approximate(8).item() == pytest.approx(36.0 + 9.0 * 2 + (4.0 / 3.0) * 4 / 2, rel=1e-15)
    assert span.approximate(8).item() == 36.0 + 9.0 * 2 + 2.0 * 4 / 2
    assert len(latest.derivatives) == 3 and len(latest.steps) == 3  # m + 1 buffers


@pytest.mark.parametrize("gaps", ["latest", "span"])
@pytest.mark.parametrize("order", [1, 2, 3])
def test_taylor_exact_on_lines_at_irregular_gaps(gaps, order):
    torch.manual_seed(order)
    a, b = torch.randn(3, 4, dtype=torch.float64), torch.randn(3, 4, dtype=torch.float64)
    taylor = TaylorSeerCalibrator(order, derivative_start_step=0, gaps=gaps)
    for step in (0, 1, 2, 5, 6, 10, 13):
        taylor.update(step, a + b * step)
    torch.testing.assert_close(taylor.approximate(17), a + b * 17, rtol=1e-12, atol=1e-12)


def test_taylor_start_up_matches_cache_dit():
    # Default start 3: updates at steps 0-2 hold the value; the update at step 3 forms the first
    # derivative from steps 2 and 3; the second derivative needs one more computed step.
    f = {s: float(s * s + 1) for s in range(8)}
    taylor = TaylorSeerCalibrator(2)
    feed(taylor, {0: f[0], 1: f[1], 2: f[2]})
    assert taylor.approximate(3).item() == f[2]  # cache-dit: plain reuse before step 3
    taylor.update(3, t(f[3]))
    assert len(taylor.derivatives) == 2
    assert taylor.approximate(5).item() == f[3] + (f[3] - f[2]) * 2
    taylor.update(6, t(37.0))
    d1_new, d1_old = (37.0 - f[3]) / 3, f[3] - f[2]
    assert taylor.approximate(7).item() == pytest.approx(37.0 + d1_new + (d1_new - d1_old) / 3 / 2, rel=1e-15)
    # from step 0 instead, step 2 already has a first and a second derivative
    early = feed(TaylorSeerCalibrator(2, derivative_start_step=0), {0: f[0], 1: f[1], 2: f[2]})
    assert early.approximate(3).item() == f[2] + (f[2] - f[1]) + ((f[2] - f[1]) - (f[1] - f[0])) / 2


def test_newton_start_0_is_todays_forecaster_bit_for_bit():
    torch.manual_seed(0)
    steps = [0, 1, 2, 5, 6, 10, 13]
    values = [torch.randn(2, 3) for _ in steps]
    today, seam = TaylorSeer(2), NewtonCalibrator(2)
    for step, value in zip(steps, values):
        today.update(step, value)
        seam.update(step, value)
        assert torch.equal(seam.approximate(step + 2), today.forecast(step + 2))


def test_newton_start_drops_earlier_points():
    newton = feed(NewtonCalibrator(2, derivative_start_step=3), {0: 1.0, 1: 2.0, 2: 4.0})
    assert newton.approximate(3).item() == 4.0  # only step 2 is left
    newton.update(3, t(9.0))
    assert newton.approximate(5).item() == 9.0 + 5.0 * 2  # the line through steps 2 and 3
    newton.update(4, t(16.0))  # t^2 through 2, 3, 4: exact
    assert newton.approximate(7).item() == pytest.approx(49.0, rel=1e-15)


def test_foca_heun_sequence_with_horizon_damping():
    foca = feed(FoCaCalibrator(), {0: 1.0, 1: 2.0})
    # slope at the anchor (2 - 1) + local slope (2 - 1), half per step ahead
    assert foca.approximate(2).item() == 2.0 + 0.5 * 2
    # recursive: the local slope now comes from the forecast 3 at step 2
    assert foca.approximate(3).item() == 2.0 + 1.0 * (1.0 + 1.0)
    foca.update(4, t(10.0))
    # cache-dit's slopes ignore gaps: anchor 10 - 2 (steps 1..4), local 10 - 4 (forecast at 3)
    assert foca.approximate(5).item() == 10.0 + 0.5 * (8.0 + 6.0)
    assert foca.approximate(6).item() == 10.0 + 1.0 * (8.0 + 7.0)
    assert foca.approximate(7).item() == 10.0 + 1.5 * (8.0 + 8.0)
    # beyond the horizon 3: the horizon-3 step weighted 3/4 towards the anchor
    assert foca.approximate(8).item() == 10.0 + 0.75 * 1.5 * (8.0 + 9.0)


def test_foca_per_step_slopes_and_memo():
    ps = feed(FoCaCalibrator(per_step_slopes=True), {1: 2.0, 4: 10.0})
    # one computed window so far: slopes (10 - 2) / 3 twice
    assert ps.approximate(5).item() == pytest.approx(10.0 + 0.5 * (8.0 / 3 + 8.0 / 3), rel=1e-15)
    fifth = ps.approximate(5)
    sixth = ps.approximate(6)
    assert torch.equal(ps.approximate(5), fifth) and torch.equal(ps.approximate(6), sixth)
    skipping = feed(FoCaCalibrator(per_step_slopes=True), {1: 2.0, 4: 10.0})
    assert torch.equal(skipping.approximate(6), sixth)  # steps not asked for are rolled through


def test_foca_start_up_holds_the_value_before_the_start_step():
    foca = feed(FoCaCalibrator(derivative_start_step=3), {0: 1.0, 1: 5.0, 2: 6.0})
    assert foca.approximate(3).item() == 6.0  # no slope across steps 0-2
    foca.update(3, t(8.0))
    # slopes from steps 2 and 3 only: anchor 8 - 6, local 8 - 6
    assert foca.approximate(4).item() == 8.0 + 0.5 * (2.0 + 2.0)
    early = feed(FoCaCalibrator(), {0: 1.0, 1: 5.0, 2: 6.0})
    assert early.approximate(3).item() == 6.0 + 0.5 * (1.0 + 1.0)


@pytest.mark.parametrize("cls, kwargs", [(FoCaCalibrator, {"horizon": None, "per_step_slopes": True}),
                                         (TaylorSeerCalibrator, {"order": 1, "derivative_start_step": 0})])
def test_lines_forecast_exactly_at_irregular_gaps(cls, kwargs):
    calibrator = feed(cls(**kwargs), {0: 3.0, 2: 7.0, 3: 9.0})
    for step in (4, 5, 9):
        assert calibrator.approximate(step).item() == pytest.approx(3.0 + 2.0 * step, rel=1e-14)


def test_foca_with_gap_blind_slopes_overshoots_lines():
    # cache-dit's FoCa on the same line: computed steps 0 and 2 are two steps apart, both slopes
    # are the two-step difference 7 - 3, so one step ahead moves by 4: twice the line's slope.
    foca = feed(FoCaCalibrator(), {0: 3.0, 2: 7.0})
    assert foca.approximate(3).item() == 7.0 + 0.5 * (4.0 + 4.0)  # truth 9


def test_hermite_polynomials():
    # H_0..H_4 at y = 0.5 from their closed forms 1, 2y, 4y^2 - 2, 8y^3 - 12y, 16y^4 - 48y^2 + 12
    y = 0.5
    assert [hermite(y, n) for n in range(5)] == [1.0, 2 * y, 4 * y**2 - 2, 8 * y**3 - 12 * y,
                                                 16 * y**4 - 48 * y**2 + 12]


def test_hermite_forecast_weights():
    points = {4: 64.0, 6: 216.0, 8: 512.0}  # ladder from step 0: value 512, d1 148, d2 36
    sigma, k = 0.6, 3.0
    h2 = feed(HermiteCalibrator(2, sigma=sigma, derivative_start_step=0), points)
    expected = 512.0 + 148.0 * sigma * 2 * sigma * k + 36.0 * sigma**2 * (4 * (sigma * k) ** 2 - 2) / 2
    assert h2.approximate(11).item() == pytest.approx(expected, rel=1e-15)
    # order 1: TaylorSeer's slope times 2 sigma^2; sigma = 1/sqrt(2) is TaylorSeer itself
    h1 = feed(HermiteCalibrator(1, sigma=sigma, derivative_start_step=0), points)
    assert h1.approximate(11).item() == pytest.approx(512.0 + 2 * sigma**2 * 148.0 * k, rel=1e-15)
    plain = feed(HermiteCalibrator(1, sigma=2**-0.5, derivative_start_step=0), points)
    taylor = feed(TaylorSeerCalibrator(1, derivative_start_step=0), points)
    assert plain.approximate(11).item() == pytest.approx(taylor.approximate(11).item(), rel=1e-15)


def test_hermite_keeps_taylorseer_start_up():
    hermite_seer = feed(HermiteCalibrator(1, sigma=0.6), {0: 1.0, 1: 2.0, 2: 4.0})
    assert hermite_seer.approximate(5).item() == 4.0  # no derivative before step 3


# ---------------------------------------------------------------- on the trained reference model
@pytest.fixture(scope="module")
def reference_pipe():
    from cache_dit.reference import FashionFluxPipeline

    pipe = FashionFluxPipeline.from_reference()
    pipe.set_progress_bar_config(disable=True)
    return pipe


def test_why_todays_taylorseer_lost_on_the_reference_model(reference_pipe):
    """Closed loop at DBCache's own decisions (F1B0, threshold 0.16, caching from step 3):
    today's order-2 forecaster (the Newton polynomial through the first, fastest-changing
    steps) loses to cache-dit 1.5.3's rule; each of the two differences alone recovers part of it.
    """
    from cache_dit.bench.forecast import dbcache_patterns, open_loop_error, replay

    labels, seeds = [7, 1], [0, 1]
    patterns = dbcache_patterns(reference_pipe, labels, seeds, Fn_compute_blocks=1, Bn_compute_blocks=0,
                                residual_diff_threshold=0.16, warmup_steps=3)
    assert all(min(branch) == 3 for pattern in patterns for branch in pattern)  # caching starts at 3
    variants = {"today": lambda: NewtonCalibrator(2),
                "start_up_fixed": lambda: NewtonCalibrator(2, derivative_start_step=3),
                "formula_fixed": lambda: TaylorSeerCalibrator(2, derivative_start_step=0),
                "cache_dit": lambda: TaylorSeerCalibrator(2)}
    result = replay(reference_pipe, labels, seeds, patterns, variants)
    psnr = {name: sum(result.psnr(i, name) for i in range(2)) / 2 for name in variants}
    margin = 1.0  # dB
    assert psnr["cache_dit"] > psnr["today"] + 3 * margin, psnr
    assert psnr["start_up_fixed"] > psnr["today"] + margin, psnr
    assert psnr["formula_fixed"] > psnr["today"] + margin, psnr
    # open loop (fed the uncached trajectory): the same order, so it is the forecast itself
    error = {name: [e for i in range(2) for b in range(2) for e in open_loop_error(
        result.uncached_residuals[i][b], patterns[i][b], make)] for name, make in variants.items()}
    mean = {name: sum(e) / len(e) for name, e in error.items()}
    assert mean["cache_dit"] < 0.75 * mean["today"], mean


def test_damping_scales_the_forecast_change_and_leaves_the_inner_recursion_alone():
    from cache_dit.calibrators import DampedCalibrator, damped

    # FoCa, per-step slopes from step 0, on 0, 1, 4 at steps 0, 1, 2: anchor 4, anchor slope 3
    points = {0: 0.0, 1: 1.0, 2: 4.0}
    plain = feed(FoCaCalibrator(horizon=None, per_step_slopes=True), points)
    inner = FoCaCalibrator(horizon=None, per_step_slopes=True)
    calibrator = feed(DampedCalibrator(inner, 0.5), points)
    assert calibrator.ready and calibrator.inner is inner
    # step 3: 4 + (1/2)(3 + 3) = 7, damped 4 + 0.5 * 3 = 5.5; step 4 recurses on the undamped 7:
    # window (3, 7), (2, 4): local slope 3, 4 + (2/2)(3 + 3) = 10, damped 4 + 0.5 * 6 = 7
    assert plain.approximate(3).item() == 7.0 and calibrator.approximate(3).item() == 5.5
    assert plain.approximate(4).item() == 10.0 and calibrator.approximate(4).item() == 7.0
    calibrator.update(5, t(9.0))  # a new computed step is the new anchor
    assert calibrator.anchor.item() == 9.0
    calibrator.reset()
    assert not calibrator.ready and calibrator.anchor is None and not inner.ready
    reuse = ReuseCalibrator()
    assert damped(reuse, 1) is reuse and damped(reuse, 1.0) is reuse
    assert isinstance(damped(reuse, 0.9), DampedCalibrator)
    assert repr(DampedCalibrator(ReuseCalibrator(), 0.9)).endswith("damping=0.9)")
    for bad, error in ((0, ValueError), (1.5, ValueError), (float("nan"), ValueError),
                       ("0.9", TypeError), (True, TypeError)):
        with pytest.raises(error, match="DampedCalibrator damping must be"):
            DampedCalibrator(ReuseCalibrator(), bad)
    with pytest.raises(RuntimeError, match="before any update"):
        DampedCalibrator(ReuseCalibrator(), 0.5).approximate(1)
