"""Reading required widths off the curves, quantiles and slopes (SPEC 4)."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from prune_jax.slth.sweep import (
    geometric_widths,
    linear_slope,
    loglog_slope,
    lower_bound_width,
    make_problem,
    neuron_curve,
    quantiles,
    upper_bound_width,
    weight_curve,
)


def test_geometric_widths() -> None:
    assert geometric_widths(16).tolist() == [2, 3, 4, 6, 8, 11, 16]
    assert geometric_widths(20, first=4, factor=2.0).tolist() == [4, 8, 16, 20]
    with pytest.raises(ValueError, match="max_width"):
        geometric_widths(1)
    with pytest.raises(ValueError, match="factor"):
        geometric_widths(8, factor=1.0)


def test_lower_bound_width_uses_monotonicity() -> None:
    widths = np.array([2, 4, 8, 16])
    lower = np.array([0.9, 0.3, 0.2, 0.05])
    # LB(8) = 0.2 > 0.1 rules out every width <= 8
    assert lower_bound_width(widths, lower, 0.1) == (9, False)
    assert lower_bound_width(widths, lower, 0.95) == (1, False)
    # even the widest LP is above eps: the bound (17) holds but is censored
    assert lower_bound_width(widths, lower, 0.01) == (17, True)
    # a non-monotone (looser) bound at a wider width still rules out the narrower ones
    assert lower_bound_width(widths, np.array([0.9, 0.05, 0.2, 0.01]), 0.1) == (9, False)
    with pytest.raises(ValueError, match="eps"):
        lower_bound_width(widths, lower, 1.0)


def test_upper_bound_width_and_quantiles() -> None:
    assert upper_bound_width([1, 2, 3], [0.5, 0.1, 0.01], 0.1) == 2
    assert upper_bound_width([1, 2, 3], [0.5, 0.2, 0.15], 0.1) is None
    q = quantiles([5, 1, 3, 2, 4])
    assert q.median == 3 and q.p90 == 5
    # a seed that never reached eps makes the upper quantiles infinite, not smaller
    q = quantiles([10, 20, None, 30, 40])
    assert q.median == 30 and q.p90 == np.inf
    with pytest.raises(ValueError, match="values"):
        quantiles([])


def test_quantiles_preserve_bounds() -> None:
    """Order statistics are monotone: per-seed lower bounds give a lower bound on the median."""
    rng = np.random.default_rng(0)
    for _ in range(50):
        truth = rng.integers(1, 100, size=7)
        lower = truth - rng.integers(0, 5, size=7)
        upper = truth + rng.integers(0, 5, size=7)
        assert quantiles(lower).median <= quantiles(truth).median <= quantiles(upper).median
        assert quantiles(lower).p90 <= quantiles(truth).p90 <= quantiles(upper).p90


def test_slopes() -> None:
    x = 2.0 ** np.arange(2, 15, 2)
    assert loglog_slope(x, 3.0 * x) == pytest.approx(1.0)
    assert loglog_slope(x, 5.0 * np.sqrt(x)) == pytest.approx(0.5)
    assert linear_slope(np.log2(x), 7.0 * np.log2(x) + 3) == pytest.approx(7.0)
    assert np.isnan(loglog_slope([1.0], [2.0]))
    assert loglog_slope(x, np.where(x > 100, np.nan, x)) == pytest.approx(1.0)


def test_curves_on_a_tiny_problem() -> None:
    problem = make_problem(jax.random.key(0), 2, 32)
    again = make_problem(jax.random.key(0), 2, 32)
    np.testing.assert_array_equal(problem.pool.w, again.pool.w)
    assert problem.pool.w.dtype == np.float64
    curve = neuron_curve(jax.random.key(1), problem, [4, 8, 16], search_steps=4)
    assert curve.found_exact and curve.lower.shape == (3,)
    assert np.all(curve.lower <= curve.found + 1e-12)  # certified bound <= achieved error
    weight = weight_curve(problem, max_items=8)
    assert weight.certificate.shape == (33,)
    with pytest.raises(ValueError, match="widths"):
        neuron_curve(jax.random.key(1), problem, [8, 4])
    with pytest.raises(ValueError, match="pool has"):
        neuron_curve(jax.random.key(1), problem, [64])


@pytest.mark.slow
def test_rates_in_2d_over_seeds() -> None:
    """The science claim, d = 2, 5 seeds: the neuron LP bound falls like 1/N (median ratio
    LB(512) / LB(64) near 1/8); the weight certificate reaches 2^-14 with at most 14/4 times
    the units it needs for 2^-4 (N proportional to log(1/eps); sqrt(1/eps) would give 32x)."""
    ratios, weight = [], []
    for seed in range(5):
        problem = make_problem(jax.random.fold_in(jax.random.key(7), seed), 2, 512)
        curve = neuron_curve(jax.random.key(seed), problem, [64, 512], search_max_width=0)
        ratios.append(curve.lower[1] / curve.lower[0])
        cert = weight_curve(problem, max_items=28).certificate
        n = np.arange(cert.size)
        weight.append(upper_bound_width(n, cert, 2.0**-14) / upper_bound_width(n, cert, 2.0**-4))
    assert 1 / 32 <= np.median(ratios) <= 1 / 3
    assert np.median(weight) <= 14 / 4
