"""Targets, nested pools, masks and the forward pass (SPEC 4)."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from prune_jax.slth.networks import (
    Net,
    Pool,
    WeightMask,
    forward,
    neuron_net,
    pool_prefix,
    residual,
    sample_pool,
    sample_sphere,
    sample_target,
    target,
    weight_net,
)


def test_targets_are_unit_and_uniform() -> None:
    with jax.enable_x64(True):
        x = np.asarray(sample_sphere(jax.random.key(0), 20000, 3))
        w = np.asarray(sample_target(jax.random.key(1), 5))
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, atol=1e-12)
    assert np.linalg.norm(w) == pytest.approx(1.0)
    # uniform on the sphere: mean 0 and second moment I/d (standard errors ~ 0.004)
    np.testing.assert_allclose(x.mean(0), 0.0, atol=0.02)
    np.testing.assert_allclose(x.T @ x / len(x), np.eye(3) / 3, atol=0.02)
    # not a coordinate vector (coordinate targets make weight masks trivially good)
    assert np.max(np.abs(w)) < 1.0 - 1e-6


def test_pools_are_nested_and_reproducible() -> None:
    big = sample_pool(jax.random.key(3), 4, 64)
    again = sample_pool(jax.random.key(3), 4, 64)
    small = pool_prefix(big, 10)
    np.testing.assert_array_equal(big.w, again.w)
    np.testing.assert_array_equal(small.w, big.w[:10])
    np.testing.assert_array_equal(small.alpha, big.alpha[:10])
    assert big.w.shape == (64, 4) and big.alpha.shape == (64,)
    other = sample_pool(jax.random.key(4), 4, 64)
    assert not np.allclose(other.w, big.w)


def test_forward_against_numpy() -> None:
    rng = np.random.default_rng(0)
    pool = Pool(rng.normal(size=(7, 3)), rng.normal(size=7))
    x = rng.normal(size=(11, 3))
    keep = rng.random(7) < 0.5
    hidden = rng.random((7, 3)) < 0.5
    w_star = np.array([0.6, 0.0, 0.8])
    with jax.enable_x64(True):
        g_neuron = np.asarray(forward(neuron_net(pool, keep), x))
        g_weight = np.asarray(forward(weight_net(pool, WeightMask(hidden, keep)), x, True))
        r = np.asarray(residual(w_star, neuron_net(pool, keep), x, True))
        t = np.asarray(forward(target(w_star), x))
    relu = lambda z: np.maximum(z, 0.0)
    np.testing.assert_allclose(g_neuron, relu(x @ pool.w.T) @ (keep * pool.alpha), atol=1e-12)
    np.testing.assert_allclose(g_weight, relu(relu(x @ (hidden * pool.w).T) @ (keep * pool.alpha)),
                               atol=1e-12)
    np.testing.assert_allclose(t, relu(x @ w_star), atol=1e-12)
    np.testing.assert_allclose(r, relu(x @ w_star) - relu(g_neuron), atol=1e-12)


def test_positive_homogeneity() -> None:
    """Why the sup over the unit ball is the sup over the sphere: g(a x) = a g(x), a >= 0."""
    rng = np.random.default_rng(1)
    net = Net(rng.normal(size=(5, 2)), rng.normal(size=5))
    x = rng.normal(size=(4, 2))
    with jax.enable_x64(True):
        np.testing.assert_allclose(np.asarray(forward(net, 0.3 * x, True)),
                                   0.3 * np.asarray(forward(net, x, True)), atol=1e-12)


def test_bad_input_names_the_argument() -> None:
    key = jax.random.key(0)
    with pytest.raises(ValueError, match="d must be >= 2"):
        sample_target(key, 1)
    with pytest.raises(ValueError, match="size"):
        sample_pool(key, 2, 0)
    with pytest.raises(ValueError, match="n must be in"):
        pool_prefix(sample_pool(key, 2, 4), 5)
    pool = Pool(np.ones((3, 2)), np.ones(3))
    with pytest.raises(ValueError, match="s must have shape"):
        neuron_net(pool, np.ones(4))
    with pytest.raises(ValueError, match=r"mask\.hidden"):
        weight_net(pool, WeightMask(np.ones((3, 3)), np.ones(3)))
    with pytest.raises(TypeError, match="d must be an integer"):
        sample_target(key, 2.5)
