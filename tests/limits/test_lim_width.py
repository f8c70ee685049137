"""Exact ellipsoid Gaussian width (SPEC 2.2): analytic oracles, Monte Carlo, bounds, errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.special import poch

from prune_jax.limits import ellipsoid_gaussian_width as width


def _chi_mean(r: float, d: int) -> float:
    """E||r g|| for g ~ N(0, I_d): r sqrt(2) Gamma((d+1)/2) / Gamma(d/2)."""
    return r * math.sqrt(2.0) * poch(d / 2.0, 0.5)


def _monte_carlo(r: np.ndarray, n: int, seed: int) -> tuple[float, float]:
    """Mean and standard error of ||r * g|| over n Gaussian samples (chunked)."""
    rng = np.random.default_rng(seed)
    norms = np.concatenate([np.linalg.norm(r * rng.standard_normal((n // 20, r.size)), axis=1)
                            for _ in range(20)])
    return float(norms.mean()), float(norms.std(ddof=1) / math.sqrt(norms.size))


def _direct(r: np.ndarray, step: float = 0.125) -> float:
    """The SPEC 2.2 integral by plain log1p sums over a wide u = log t window (no binning)."""
    x = np.asarray(r, dtype=np.float64) ** 2
    u = np.arange(-130.0, 130.0, step)
    s = np.array([0.5 * np.sum(np.log1p(2.0 * math.exp(v) * x)) for v in u])
    return step * float(np.sum(-np.expm1(-s) * np.exp(-u / 2))) / (2.0 * math.sqrt(math.pi))


def _check_bounds(r: np.ndarray, w: float, rtol: float = 1e-11) -> None:
    scale = float(np.max(r))
    norm2 = float(np.sum((r / scale) ** 2))  # scaled: no overflow for huge axes
    w2 = (w / scale) ** 2
    assert math.sqrt(2 / math.pi) * math.sqrt(norm2) <= (w / scale) * (1 + rtol)
    assert w2 <= norm2 * (1 + rtol)
    assert norm2 - 1.0 <= w2 * (1 + rtol) + rtol * norm2


@pytest.mark.parametrize("r", [1e-8, 0.37, 1.0, 5.0, 1e8])
def test_one_axis_is_sqrt_two_over_pi(r):
    assert width([r]) == pytest.approx(r * math.sqrt(2 / math.pi), rel=1e-10)


@pytest.mark.parametrize("d", [2, 3, 10, 1000, 100_000])
def test_equal_axes_give_the_chi_mean(d):
    assert width(np.full(d, 0.3)) == pytest.approx(_chi_mean(0.3, d), rel=1e-10)


def test_zero_axes_contribute_nothing():
    base = np.array([0.5, 2.0, 3.0])
    assert width(np.concatenate([base, np.zeros(1000)])) == pytest.approx(width(base), rel=1e-14)
    assert width(np.zeros(7)) == 0.0
    assert width([]) == 0.0


def test_infinite_axis_gives_infinite_width():
    assert width([1.0, np.inf, 0.0]) == math.inf


def test_homogeneous_and_permutation_invariant():
    r = np.random.default_rng(1).lognormal(0.0, 2.0, 500)
    w = width(r)
    assert width(3.5 * r) == pytest.approx(3.5 * w, rel=1e-12)
    assert width(r[::-1].reshape(20, 25)) == pytest.approx(w, rel=1e-13)


def test_agrees_with_direct_quadrature_over_sixteen_decades():
    r = 10.0 ** np.random.default_rng(2).uniform(-8, 8, 5000)
    assert width(r) == pytest.approx(_direct(r), rel=1e-11)
    r = np.random.default_rng(3).lognormal(0.0, 3.0, 2000)
    assert width(r) == pytest.approx(_direct(r), rel=1e-11)


@pytest.mark.parametrize("case", ["random", "degenerate", "heavy_tailed"])
def test_agrees_with_monte_carlo(case):
    rng = np.random.default_rng({"random": 10, "degenerate": 11, "heavy_tailed": 12}[case])
    if case == "random":
        r = rng.uniform(0.0, 2.0, 60)
    elif case == "degenerate":  # many zero axes, a few small ones and one huge axis
        r = np.concatenate([np.zeros(40), rng.uniform(0, 0.1, 10), [50.0]])
    else:
        r = rng.pareto(1.5, 80) + 1e-3
    mc, se = _monte_carlo(r, 200_000, seed=7)
    w = width(r)
    assert abs(w - mc) <= 5 * se
    assert abs(w - mc) <= 0.005 * w


@pytest.mark.parametrize("case", ["random", "degenerate", "huge"])
def test_bounds_hold(case):
    rng = np.random.default_rng(20)
    r = {
        "random": rng.uniform(0, 1, 1000),
        "degenerate": np.concatenate([np.zeros(10_000), [3.0], np.full(3, 1e-8)]),
        "huge": 10.0 ** rng.uniform(-8, 8, 200_000),
    }[case]
    _check_bounds(r, width(r))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(-8.0, 8.0), min_size=1, max_size=40),
       st.integers(0, 5))
def test_bounds_hold_property(exponents, zeros):
    r = np.concatenate([10.0 ** np.asarray(exponents), np.zeros(zeros)])
    _check_bounds(r, width(r))


def test_accepts_float32_and_integer_input():
    assert width(np.ones(4, np.float32)) == pytest.approx(_chi_mean(1.0, 4), rel=1e-10)
    assert width(np.array([2])) == pytest.approx(2 * math.sqrt(2 / math.pi), rel=1e-10)


@pytest.mark.parametrize("bad", [[1.0, -0.1], [np.nan, 1.0], [1.0, np.nan, np.inf]])
def test_bad_axes_raise_naming_the_argument(bad):
    with pytest.raises(ValueError, match="semi_axes"):
        width(bad)


def test_non_real_axes_raise_type_error():
    with pytest.raises(TypeError, match="semi_axes"):
        width(np.array([1 + 1j]))
    with pytest.raises(TypeError, match="semi_axes"):
        width(["a"])


@pytest.mark.slow
def test_ten_million_axes():
    rng = np.random.default_rng(30)
    r = 10.0 ** rng.uniform(-8, 8, 10_000_000)
    _check_bounds(r, width(r))
    assert width(np.full(10_000_000, 2.0)) == pytest.approx(_chi_mean(2.0, 10_000_000),
                                                            rel=1e-10)
