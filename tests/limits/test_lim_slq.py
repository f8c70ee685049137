"""The limit functions on a genuine SLQ result from prune_jax.curvature.slq (SPEC 1.3, 2.2)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.tree_util import Partial

from prune_jax.curvature import slq
from prune_jax.limits import predict_sparsity_limit, projected_width_fraction


def _matvec(matrix: jax.Array, v: jax.Array) -> jax.Array:
    return matrix @ v


def _symmetric(seed: int, d: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Q diag(lambda) Q^T with a Hessian-like spectrum: a bulk near 0, outliers, negatives."""
    rng = np.random.default_rng(seed)
    lams = np.concatenate([rng.exponential(0.01, d - 40), rng.uniform(0.5, 5.0, 30),
                           -rng.exponential(0.02, 10)])
    q, _ = np.linalg.qr(rng.normal(size=(d, d)))
    return (q * lams) @ q.T, lams


def test_slq_fraction_and_limit_match_the_exact_spectrum():
    matrix, lams = _symmetric(0)
    op = Partial(_matvec, jnp.asarray(matrix, jnp.float32))
    q = slq(op, jnp.zeros(lams.size, jnp.float32), key=jax.random.key(0), num_probes=32,
            num_steps=40)
    assert q.nodes.shape == q.weights.shape == (32, 40)
    eps = 1e-3
    dist = np.array([0.0, 0.05, 0.2, 0.5, 1.0, 3.0])
    # Stated tolerance: Hutchinson error of 32 Rademacher probes in D = 256 (~0.01) plus
    # Gauss quadrature error of 40 nodes (negligible for this smooth integrand).
    np.testing.assert_allclose(projected_width_fraction(q, dist, eps),
                               projected_width_fraction(lams, dist, eps), atol=0.03)
    params = {"Dense_0": {"kernel": jnp.asarray(
        np.random.default_rng(1).laplace(0, 0.02, (16, 16)), jnp.float32)}}  # D_p = D = 256
    approx = predict_sparsity_limit(params, q, eps)
    exact = predict_sparsity_limit(params, lams, eps)
    assert approx.sparsity == pytest.approx(exact.sparsity, abs=0.03)
    assert 0.05 < exact.sparsity < 0.95  # a non-trivial crossing
