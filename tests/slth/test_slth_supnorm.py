"""Sup-norm error (SPEC 4): exact in d = 2, lower estimates in d > 2."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from prune_jax.slth.networks import Net, Pool, WeightMask, neuron_net, weight_net
from prune_jax.slth.supnorm import (
    SupSearch,
    arc_maxima_2d,
    sup_error,
    sup_error_2d,
    sup_error_2d_batch,
    sup_error_grid_2d,
    sup_error_search,
    worst_points,
)

GRID = 2**16
FAST = SupSearch(n_samples=1024, ascent_starts=16, ascent_steps=24)  # shared: fewer compiles


def _random_case(seed: int, n: int, d: int = 2) -> tuple[np.ndarray, Pool, np.ndarray]:
    rng = np.random.default_rng(seed)
    w_star = rng.normal(size=d)
    w_star /= np.linalg.norm(w_star)
    pool = Pool(rng.normal(size=(n, d)), rng.normal(size=n))
    keep = rng.random(n) < 0.5
    return w_star, pool, keep


def _residual(w_star: np.ndarray, net: Net, x: np.ndarray, output_relu: bool) -> np.ndarray:
    h = np.maximum(x @ np.asarray(net.u).T, 0.0) @ np.asarray(net.c)
    return np.maximum(x @ w_star, 0.0) - (np.maximum(h, 0.0) if output_relu else h)


def _oracle_angles(w_star: np.ndarray, net: Net, output_relu: bool) -> np.ndarray:
    """Independent numpy oracle: a 2^16 grid plus every kink of the residual (the kinks of each
    unit and of the target; with the output ReLU also the zero crossings of g, located by
    bisection between grid points where g changes sign)."""
    u = np.concatenate([np.asarray(net.u), w_star[None]])
    phi = np.arctan2(u[:, 1], u[:, 0])
    grid = np.arange(GRID) * (2 * np.pi / GRID)
    angles = [grid, phi + np.pi / 2, phi - np.pi / 2]
    if output_relu:
        g = lambda t: np.maximum(np.stack([np.cos(t), np.sin(t)], -1) @ np.asarray(net.u).T,
                                 0.0) @ np.asarray(net.c)
        lo = grid
        hi = np.roll(grid, -1) + np.where(np.arange(GRID) == GRID - 1, 2 * np.pi, 0.0)
        change = np.flatnonzero(np.sign(g(lo)) != np.sign(g(hi)))
        a, b = lo[change], hi[change]
        for _ in range(60):
            mid = 0.5 * (a + b)
            left = np.sign(g(a)) != np.sign(g(mid))
            a, b = np.where(left, a, mid), np.where(left, mid, b)
        angles.append(0.5 * (a + b))
    return np.concatenate(angles)


def _lipschitz(w_star: np.ndarray, net: Net) -> float:
    return 1.0 + float(np.abs(np.asarray(net.c)) @ np.linalg.norm(np.asarray(net.u), axis=1))


@pytest.mark.parametrize("output_relu", [False, True])
@pytest.mark.parametrize("seed", range(6))
def test_exact_2d_sup_matches_grid_and_is_never_below(seed: int, output_relu: bool) -> None:
    w_star, pool, keep = _random_case(seed, n=6 + 4 * seed)
    nets = [neuron_net(pool, keep)]
    # a Pensia-like weight mask (one coordinate per unit) as well
    hidden = np.zeros(pool.w.shape, bool)
    hidden[np.arange(pool.w.shape[0]), np.arange(pool.w.shape[0]) % 2] = keep
    nets.append(weight_net(pool, WeightMask(hidden, keep)))
    with jax.enable_x64(True):
        for net in nets:
            exact = float(sup_error_2d(w_star, net, output_relu).value)
            grid = float(sup_error_grid_2d(w_star, net, output_relu, GRID).value)
            # never below the grid maximum, and within the grid's Lipschitz slack
            assert exact >= grid - 1e-12
            assert exact - grid <= _lipschitz(w_star, net) * np.pi / GRID
            theta = _oracle_angles(w_star, net, output_relu)
            x = np.stack([np.cos(theta), np.sin(theta)], axis=1)
            oracle = np.abs(_residual(w_star, net, x, output_relu)).max()
            assert exact >= oracle - 1e-12
            assert exact - oracle <= 1e-6


def test_exact_2d_attains_its_value_at_its_point() -> None:
    w_star, pool, keep = _random_case(7, n=12)
    net = neuron_net(pool, keep)
    with jax.enable_x64(True):
        res = sup_error_2d(w_star, net, True)
    assert np.linalg.norm(res.point) == pytest.approx(1.0)
    assert abs(_residual(w_star, net, res.point[None], True)[0]) == pytest.approx(res.value,
                                                                                 abs=1e-12)


@pytest.mark.parametrize("d", [2, 4])
def test_analytic_cases(d: int) -> None:
    rng = np.random.default_rng(d)
    w_star = rng.normal(size=d)
    w_star /= np.linalg.norm(w_star)
    cases = [  # (network, sup |relu(<w*,x>) - g(x)|)
        (Net(w_star[None], np.array([1.0])), 0.0),                  # the target itself
        (Net(np.zeros((1, d)), np.array([0.0])), 1.0),              # empty network
        (Net(w_star[None], np.array([0.3])), 0.7),                  # scaled copy
        (Net(-w_star[None], np.array([1.0])), 1.0),                 # f - g = <w*, x>
        (Net(np.stack([w_star, 2 * w_star]), np.array([0.5, 1.0])), 1.5),
    ]
    with jax.enable_x64(True):
        for net, expected in cases:
            est = sup_error(jax.random.key(0), w_star, net, search=FAST)
            assert est.exact == (d == 2)
            assert est.value == pytest.approx(expected, abs=1e-9)


def test_search_is_a_lower_estimate_close_to_exact_in_2d() -> None:
    with jax.enable_x64(True):
        for seed in range(4):
            w_star, pool, keep = _random_case(seed, n=24)
            net = neuron_net(pool, keep)
            exact = float(sup_error_2d(w_star, net).value)
            found = sup_error_search(jax.random.key(seed), w_star, net, search=FAST, k=4)
            assert found.values[0] <= exact + 1e-12
            assert found.values[0] >= 0.999 * exact
            assert np.all(np.diff(found.values) <= 0)  # largest first


@pytest.mark.parametrize("output_relu", [False, True])
def test_search_values_are_attained_in_higher_d(output_relu: bool) -> None:
    w_star, pool, keep = _random_case(3, n=16, d=4)
    net = neuron_net(pool, keep)
    with jax.enable_x64(True):
        found = sup_error_search(jax.random.key(1), w_star, net, output_relu, FAST, k=8)
    x = found.points
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, atol=1e-12)
    np.testing.assert_allclose(np.abs(_residual(w_star, net, x, output_relu)), found.values,
                               atol=1e-12)
    # more search never lowers the estimate below a plain sample maximum
    rng = np.random.default_rng(0)
    samples = rng.normal(size=(256, 4))
    samples /= np.linalg.norm(samples, axis=1, keepdims=True)
    plain = np.abs(_residual(w_star, net, samples, output_relu)).max()
    assert found.values[0] >= plain - 1e-12


def test_worst_points_and_arcs_2d() -> None:
    w_star, pool, keep = _random_case(5, n=10)
    net = neuron_net(pool, keep)
    with jax.enable_x64(True):
        arcs = arc_maxima_2d(w_star, net)
        worst = worst_points(jax.random.key(0), w_star, net, k=5)
        exact = float(sup_error_2d(w_star, net).value)
    assert worst.values.shape == (5,) and worst.points.shape == (5, 2)
    assert worst.values[0] == pytest.approx(exact) == pytest.approx(arcs.values.max())
    np.testing.assert_allclose(np.abs(_residual(w_star, net, arcs.points, False)), arcs.values,
                               atol=1e-12)


def test_batch_matches_single() -> None:
    w_star, pool, _ = _random_case(11, n=9)
    keep = np.random.default_rng(1).random((5, 9)) < 0.5
    with jax.enable_x64(True):
        batch = sup_error_2d_batch(w_star, pool.w, keep * pool.alpha, True)
        single = [float(sup_error_2d(w_star, neuron_net(pool, k), True).value) for k in keep]
    np.testing.assert_allclose(batch, single, atol=1e-12)


def test_bad_input_names_the_argument() -> None:
    net = Net(np.ones((3, 2)), np.ones(3))
    with pytest.raises(ValueError, match="w_star"):
        sup_error_2d(np.ones(3), net)
    with pytest.raises(ValueError, match=r"d \(len\(w_star\)\)"):
        sup_error(jax.random.key(0), np.ones(1), Net(np.ones((3, 1)), np.ones(3)))
    with pytest.raises(ValueError, match=r"net\.c"):
        sup_error_2d(np.ones(2), Net(np.ones((3, 2)), np.ones(4)))
    with pytest.raises(ValueError, match="n_points"):
        sup_error_grid_2d(np.ones(2), net, n_points=0)
    with pytest.raises(ValueError, match="n_samples"):
        SupSearch(n_samples=0)
