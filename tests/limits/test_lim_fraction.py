"""Projected width fraction F(R) and its trace bound (SPEC 2.2): limits, quadrature, errors."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pytest

from prune_jax.limits import projected_width_fraction as fraction
from prune_jax.limits import trace_width_bound


class FakeSLQ(NamedTuple):
    """Stand-in for prune_jax.curvature's SLQ result (duck-typed on nodes/weights)."""

    nodes: np.ndarray
    weights: np.ndarray
    dim: int


def _exact(lams: np.ndarray, r: float, eps: float) -> float:
    """Independent form: mean of r_i^2 / (R^2 + r_i^2), r_i^2 = 2 eps / |lambda_i| (> 0)."""
    r2 = 2 * eps / np.abs(lams)
    return float(np.mean(r2 / (r ** 2 + r2)))


def _spectrum(seed: int, d: int = 300) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.concatenate([rng.lognormal(-2.0, 2.0, d - 10), -rng.uniform(0, 0.5, 10)])


@pytest.mark.parametrize("seed", [0, 1])
def test_matches_the_definition(seed):
    lams = _spectrum(seed)
    for r in [0.01, 0.3, 2.0, 40.0]:
        assert fraction(lams, r, 0.05) == pytest.approx(_exact(lams, r, 0.05), rel=1e-12)


def test_exact_quadrature_equals_the_eigenvalue_sum():
    lams = _spectrum(2)
    d = lams.size
    rng = np.random.default_rng(3)
    perms = np.stack([rng.permutation(lams) for _ in range(4)])
    q = FakeSLQ(perms, np.full((4, d), 1.0 / d), d)
    dist = np.geomspace(1e-3, 1e3, 25)
    np.testing.assert_allclose(fraction(q, dist, 0.1), fraction(lams, dist, 0.1), rtol=1e-13)
    np.testing.assert_allclose(fraction(q, dist, 0.1, zero_mass=0.3),
                               fraction(lams, dist, 0.1, zero_mass=0.3), rtol=1e-13)


def test_quadrature_uses_nodes_and_weights_per_probe():
    # two probes with two-point measures; F = mean over probes of sum_k w_k f(theta_k)
    q = FakeSLQ(np.array([[1.0, 4.0], [2.0, 0.0]]), np.array([[0.25, 0.75], [0.5, 0.5]]), 9)
    f = lambda lam: 2 * 0.5 / (4.0 * lam + 2 * 0.5)  # R = 2, eps = 0.5
    expect = 0.5 * (0.25 * f(1.0) + 0.75 * f(4.0)) + 0.5 * (0.5 * f(2.0) + 0.5 * 1.0)
    assert fraction(q, 2.0, 0.5) == pytest.approx(expect, rel=1e-14)


def test_limits_small_and_large_distance():
    lams = np.abs(_spectrum(4))
    eps = 0.2
    assert fraction(lams, 0.0, eps) == 1.0
    big = 1e6
    asym = 2 * eps * np.mean(1 / lams) / big ** 2
    assert fraction(lams, big, eps) == pytest.approx(asym, rel=1e-6)
    assert fraction(lams, 1e200, eps) == 0.0  # overflow-free limit


def test_zero_distance_gives_exactly_one():
    rng = np.random.default_rng(9)
    for n in [1, 7, 1000, 12345]:
        lams = rng.normal(size=n) * 10.0 ** rng.uniform(-5, 5, n)
        assert fraction(lams, [0.0, 1e-300], 0.01).tolist() == [1.0, 1.0]
        q = FakeSLQ(lams.reshape(1, -1), rng.dirichlet(np.ones(n)).reshape(1, -1), n)
        assert fraction(q, 0.0, 0.01, zero_mass=0.2) == 1.0
    assert trace_width_bound(0.0, 5, 1e300, 0.1) == 1.0


def test_zero_eigenvalues_count_one_each():
    assert fraction(np.zeros(5), 1e9, 1e-3) == 1.0
    lams = np.concatenate([np.zeros(50), np.full(50, 3.0)])
    assert fraction(lams, 1e12, 1.0) == pytest.approx(0.5, abs=1e-20 + 1e-12)


def test_zero_mass_is_an_atom_at_zero():
    lams = _spectrum(5)
    padded = np.concatenate([lams, np.zeros(lams.size // 2)])
    z = (lams.size // 2) / padded.size
    dist = np.array([0.1, 1.0, 10.0])
    np.testing.assert_allclose(fraction(lams, dist, 0.3, zero_mass=z),
                               fraction(padded, dist, 0.3), rtol=1e-13)
    assert fraction(lams, 1e30, 0.3, zero_mass=1.0) == 1.0


def test_convexified_and_monotone():
    lams = _spectrum(6)
    dist = np.linspace(0, 50, 200)
    f = fraction(lams, dist, 0.1)
    np.testing.assert_array_equal(f, fraction(np.abs(lams), dist, 0.1))
    assert np.all(np.diff(f) <= 0) and np.all((f >= 0) & (f <= 1))


def test_vectorised_over_distance():
    lams = _spectrum(7)
    dist = np.random.default_rng(8).uniform(0, 5, (3, 4))
    out = fraction(lams, dist, 0.1)
    assert out.shape == (3, 4)
    np.testing.assert_allclose(out, [[_exact(lams, r, 0.1) for r in row] for row in dist],
                               rtol=1e-12)


@pytest.mark.parametrize("seed", range(5))
def test_trace_bound_is_below_the_fraction(seed):
    rng = np.random.default_rng(seed)
    lams = rng.exponential(1.0, 200) ** 3  # PSD, spread out
    dist = np.geomspace(1e-2, 1e2, 30)
    bound = trace_width_bound(lams.sum(), lams.size, dist, 0.05)
    assert np.all(bound <= fraction(lams, dist, 0.05) * (1 + 1e-12))
    assert np.all((bound < fraction(lams, dist, 0.05))[dist > 0.1])


def test_trace_bound_formula_and_equality_case():
    lams = np.full(10, 2.5)  # Jensen is tight for a constant spectrum
    dist = np.array([0.0, 0.5, 3.0])
    np.testing.assert_allclose(trace_width_bound(25.0, 10, dist, 0.2),
                               fraction(lams, dist, 0.2), rtol=1e-14)
    assert trace_width_bound(4.0, 2, 1.0, 1.0) == pytest.approx(0.5)


@pytest.mark.parametrize(("kwargs", "name"), [
    ({"eps": 0.0}, "eps"), ({"eps": -1.0}, "eps"), ({"eps": np.nan}, "eps"),
    ({"distance": -1.0}, "distance"), ({"distance": [1.0, np.nan]}, "distance"),
    ({"distance": np.inf}, "distance"),
    ({"zero_mass": -0.1}, "zero_mass"), ({"zero_mass": 1.5}, "zero_mass"),
    ({"spectrum": [1.0, np.nan]}, "spectrum"), ({"spectrum": []}, "spectrum"),
    ({"spectrum": FakeSLQ(np.ones((2, 3)), np.ones((2, 2)) / 2, 5)}, "spectrum"),
    ({"spectrum": FakeSLQ(np.ones((2, 3)), np.ones((2, 3)), 5)}, "spectrum.weights"),
])
def test_bad_arguments_raise_naming_them(kwargs, name):
    args = {"spectrum": np.ones(3), "distance": 1.0, "eps": 0.1} | kwargs
    zero_mass = args.pop("zero_mass", 0.0)
    with pytest.raises(ValueError, match=name):
        fraction(args["spectrum"], args["distance"], args["eps"], zero_mass=zero_mass)


@pytest.mark.parametrize(("args", "name"), [
    ((-1.0, 3, 1.0, 0.1), "trace_abs"), ((np.nan, 3, 1.0, 0.1), "trace_abs"),
    ((1.0, 0, 1.0, 0.1), "dim"), ((1.0, 2.5, 1.0, 0.1), "dim"),
    ((1.0, 3, -1.0, 0.1), "distance"), ((1.0, 3, 1.0, 0.0), "eps"),
])
def test_trace_bound_bad_arguments(args, name):
    with pytest.raises(ValueError, match=name):
        trace_width_bound(*args)
