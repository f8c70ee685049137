"""Near-zero mass (SPEC 1.3): Hessian-row estimator vs exact rows, SLQ weight near 0."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.tree_util import Partial

from prune_jax.curvature import (
    add_zero_atom,
    hessian_row_zero_mass,
    hvp_operator,
    slq,
    slq_zero_mass,
)
from prune_jax.tree import ravel


def _diag(d, dtype=jnp.float32):
    """diag(d) as an operator; ``jnp.multiply`` is one shared static part (shared programs)."""
    return Partial(jnp.multiply, jnp.asarray(d, dtype))


def test_quantile_rows_of_a_diagonal_operator():
    dim = 200
    d = np.where(np.arange(dim) < 70, 0.0, 1.0 + np.arange(dim) / dim)  # first 70 rows zero
    params = jnp.asarray(np.arange(dim, dtype=np.float32)[::-1].copy())  # |w_i| = 199 - i
    out = hessian_row_zero_mass(_diag(d), params, num_rows=100)
    # independent oracle: the weights at the exact magnitude quantiles, sorted ascending
    ranks = np.round(np.linspace(0, dim - 1, 100)).astype(int)
    idx = dim - 1 - ranks  # the weight of magnitude rank r sits at index 199 - r
    np.testing.assert_array_equal(out.indices, idx)
    np.testing.assert_allclose(out.magnitudes, ranks)
    np.testing.assert_allclose(out.row_l1, np.abs(d[idx]), rtol=1e-6)
    assert out.fraction == pytest.approx(np.mean(d[idx] == 0.0))
    assert 0.3 < out.fraction < 0.4 and out.tol == 1e-7


def test_dead_relu_units_give_exactly_zero_hessian_rows():
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(32, 6)), jnp.float32)
    y = jnp.asarray(rng.normal(size=(32, 2)), jnp.float32)
    b1 = np.full(10, 0.1, np.float32)
    b1[:4] = -100.0  # four hidden units never fire
    params = {"w1": jnp.asarray(rng.normal(size=(6, 10)) * 0.3, jnp.float32),
              "b1": jnp.asarray(b1),
              "w2": jnp.asarray(rng.normal(size=(10, 2)) * 0.3, jnp.float32)}

    def loss(p):
        h = jax.nn.relu(x @ p["w1"] + p["b1"])
        return jnp.mean((h @ p["w2"] - y) ** 2)

    op = hvp_operator(loss, params)
    out = hessian_row_zero_mass(op, params, num_rows=40, key=jax.random.key(1))
    flat, unravel = ravel(params)
    hess = np.asarray(jax.jit(jax.hessian(lambda w: loss(unravel(w))))(flat))
    dense_l1 = np.abs(hess).sum(axis=1)
    np.testing.assert_allclose(out.row_l1, dense_l1[out.indices], rtol=1e-5, atol=1e-7)
    assert out.fraction == pytest.approx(np.mean(dense_l1[out.indices] < 1e-7))
    assert 0.0 < out.fraction < 1.0  # some sampled rows belong to the dead units


def test_stratified_rows_are_reproducible_and_one_per_bin():
    dim = 103
    params = jnp.asarray(np.random.default_rng(1).normal(size=dim), jnp.float32)
    op = _diag(np.ones(dim))
    a = hessian_row_zero_mass(op, params, num_rows=10, key=jax.random.key(7))
    b = hessian_row_zero_mass(op, params, num_rows=10, key=jax.random.key(7))
    c = hessian_row_zero_mass(op, params, num_rows=10, key=jax.random.key(8))
    np.testing.assert_array_equal(a.indices, b.indices)
    assert not np.array_equal(a.indices, c.indices)
    ranks = np.argsort(np.argsort(np.abs(np.asarray(params)), kind="stable"), kind="stable")
    edges = (np.arange(11) * dim) // 10
    r = ranks[a.indices]
    assert np.all((r >= edges[:-1]) & (r < edges[1:]))
    assert a.fraction == 0.0
    np.testing.assert_allclose(a.row_l1, 1.0)


def test_slq_weight_near_zero_is_the_zero_fraction():
    with jax.enable_x64(True):
        dim = 60
        d = np.concatenate([np.zeros(18), np.linspace(0.5, 2.0, 42)])  # 30% zeros
        # 42 distinct non-zero values + 0: the Krylov space has dimension 43 <= num_steps
        q = slq(_diag(d, jnp.float64), jnp.zeros(dim, jnp.float64), key=jax.random.key(0),
                num_probes=6, num_steps=50)
        est = slq_zero_mass(q, tol=1e-6)
        assert est.estimate == pytest.approx(0.3, abs=1e-9)  # Rademacher: exact per probe
        assert est.stderr == pytest.approx(0.0, abs=1e-9)
        want = np.mean(np.abs(d) < 0.6)  # 18 zeros + 3 values below 0.6
        assert slq_zero_mass(q, tol=0.6).estimate == pytest.approx(want, abs=1e-9)


def test_add_zero_atom_rescales_the_quadrature():
    d = np.linspace(1.0, 3.0, 60)
    q = slq(_diag(d), jnp.zeros(60), key=jax.random.key(0), num_probes=6, num_steps=10)
    q0 = add_zero_atom(q, 0.25)
    assert q0.nodes.shape == (6, 11) and q0.dim == q.dim
    np.testing.assert_allclose(q0.weights.sum(axis=1), 1.0, rtol=1e-12)
    assert q0.expect(lambda x: x) == pytest.approx(0.75 * q.expect(lambda x: x), rel=1e-12)
    assert slq_zero_mass(q0, tol=1e-3).estimate == pytest.approx(0.25)
