"""TaylorSeer forecasting on analytic sequences with irregular step gaps."""

from __future__ import annotations

import pytest
import torch

from cache_dit.calibrators.newton import NewtonPolynomial as TaylorSeer

IRREGULAR_STEPS = [0, 1, 2, 5, 6, 10, 13]


def _poly(coefficients, x):
    return sum(c * x**i for i, c in enumerate(coefficients))


@pytest.mark.parametrize("order", [1, 2, 3])
def test_order_m_reproduces_degree_m_polynomials_at_irregular_gaps(order):
    torch.manual_seed(order)
    coefficients = [torch.randn(3, 4, dtype=torch.float64) for _ in range(order + 1)]
    seer = TaylorSeer(order)
    for step in IRREGULAR_STEPS:
        seer.update(step, _poly(coefficients, step))
    for target in (14, 15.5, 20):
        torch.testing.assert_close(seer.forecast(target), _poly(coefficients, target),
                                   rtol=1e-9, atol=1e-6)
    assert len(seer.diffs) == order + 1  # m+1 buffers, no more


def test_order_m_does_not_reproduce_degree_m_plus_1():
    seer = TaylorSeer(1)
    for step in IRREGULAR_STEPS:
        seer.update(step, torch.tensor(float(step) ** 2))
    assert abs(seer.forecast(15).item() - 225.0) > 1.0


def test_fewer_points_than_order_use_lower_order_and_spec_formula_on_equal_gaps():
    seer = TaylorSeer(2)
    seer.update(3, torch.tensor(7.0))
    assert seer.forecast(9).item() == 7.0  # one point: hold the value
    seer.update(5, torch.tensor(11.0))
    assert seer.forecast(8).item() == pytest.approx(17.0)  # linear through (3,7),(5,11)
    # equal gaps N: Newton form equals the spec's F + sum Δ^i F (-k)^i / (i! N^i) (k<0: ahead)
    seer = TaylorSeer(2)
    values = [1.0, 4.0, 2.0]  # at steps 0, 2, 4 (N = 2)
    for step, value in zip((0, 2, 4), values):
        seer.update(step, torch.tensor(value))
    d1 = values[2] - values[1]
    d2 = values[2] - 2 * values[1] + values[0]
    k = 3  # forecast 3 steps after the last point
    spec = values[2] + d1 * k / 2 + d2 * k * (k + 2) / (2 * 2**2)
    # (the spec writes the second term with k^2; on a grid the exact Newton term is k(k+N))
    assert seer.forecast(7).item() == pytest.approx(spec)


def test_bad_use():
    with pytest.raises(ValueError, match="must be an int >= 1, got 0"):
        TaylorSeer(0)
    seer = TaylorSeer(1)
    with pytest.raises(RuntimeError, match="before any update"):
        seer.forecast(1)
    seer.update(2, torch.tensor(1.0))
    with pytest.raises(ValueError, match="does not follow"):
        seer.update(2, torch.tensor(1.0))
