"""Lanczos (SPEC 1.2) on operators with exactly known spectra, breakdown, orthogonality, vmap.

Most tests share one shape (D = 60, m = 12, dense operator, basis returned) so that they share
compiled programs.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg
from jax.tree_util import Partial

from prune_jax.curvature import lanczos, top_eigenvalues, tridiagonal_eigh
from prune_jax.curvature.tridiag import lanczos_tridiag

D, M = 60, 12


def _operator(eigs, seed: int = 0, dtype=jnp.float32):
    """Dense symmetric matrix with spectrum ``eigs`` in a random orthonormal basis."""
    eigs = np.asarray(eigs, np.float64)
    rng = np.random.default_rng(seed)
    u = np.linalg.qr(rng.normal(size=(eigs.size, eigs.size)))[0]
    a = (u * eigs) @ u.T
    a = (a + a.T) / 2
    return Partial(jnp.matmul, jnp.asarray(a, dtype)), a


def _start(dim: int = D, seed: int = 1, dtype=jnp.float32) -> jax.Array:
    return jnp.asarray(np.random.default_rng(seed).normal(size=dim), dtype)


def _tridiag(res) -> np.ndarray:
    a, b = np.asarray(res.alphas, np.float64), np.asarray(res.betas, np.float64)
    return np.diag(a) + np.diag(b[:-1], 1) + np.diag(b[:-1], -1)


def _assert_valid_decomposition(res, a: np.ndarray, tol: float) -> None:
    q = np.asarray(res.basis, np.float64)
    assert np.abs(q @ q.T - np.eye(q.shape[0])).max() < tol  # orthonormal basis
    assert np.abs(q @ a @ q.T - _tridiag(res)).max() < tol * max(1.0, np.abs(a).max())


def _distance_to(values: np.ndarray, targets) -> float:
    return float(np.max(np.min(np.abs(values[:, None] - np.asarray(targets)[None]), axis=1)))


def test_twelve_distinct_eigenvalues_are_found_exactly_with_their_weights():
    with jax.enable_x64(True):
        levels = np.linspace(-2.0, 3.0, M)
        d = np.repeat(levels, D // M)  # 12 distinct values, multiplicity 5 each
        op = Partial(jnp.matmul, jnp.asarray(np.diag(d)))
        z = _start(dtype=jnp.float64)
        res = lanczos(op, z, M, return_basis=True)
        ritz = tridiagonal_eigh(res.alphas, res.betas)
        np.testing.assert_allclose(ritz.values, levels, atol=1e-12)
        # Gauss quadrature weights = mass of q_1 on each eigenspace
        zz = (np.asarray(z) ** 2).reshape(M, D // M).sum(axis=1)
        np.testing.assert_allclose(ritz.weights, zz / zz.sum(), atol=1e-12)
        assert ritz.weights.sum() == pytest.approx(1.0, abs=1e-14)
        _assert_valid_decomposition(res, np.diag(d), 1e-12)


@pytest.mark.parametrize("x64", [False, True], ids=["f32", "f64"])
def test_rank_three_operator_breaks_down_and_stays_exact(x64):
    with jax.enable_x64(x64):
        dtype = jnp.float64 if x64 else jnp.float32
        op, a = _operator([7.0, -1.0, 3.0] + [0.0] * (D - 3), dtype=dtype)
        res = lanczos(op, _start(dtype=dtype), M, return_basis=True)
        assert np.all(np.isfinite(res.alphas)) and np.all(np.isfinite(res.betas))
        # the Krylov space of a rank-3 operator from a generic start has dimension 4
        assert float(res.betas[3]) == 0.0
        ritz = np.sort(tridiagonal_eigh(res.alphas, res.betas).values)
        tol = 1e-12 if x64 else 2e-5
        np.testing.assert_allclose(ritz[[0, -2, -1]], [-1.0, 3.0, 7.0], atol=tol * 7)
        np.testing.assert_allclose(ritz[1:-2], 0.0, atol=tol * 7)
        _assert_valid_decomposition(res, a, 1e-12 if x64 else 2e-6)


def test_repeated_eigenvalues_give_exact_distinct_values():
    op, a = _operator([1.0] * 25 + [2.0] * 25 + [5.0] * 10, seed=3)
    res = lanczos(op, _start(), M, return_basis=True)
    betas = np.asarray(res.betas)
    assert betas[2] == 0.0 and betas[5] == 0.0 and betas[8] == 0.0  # 3 distinct values
    ritz = tridiagonal_eigh(res.alphas, res.betas).values
    assert _distance_to(ritz, [1.0, 2.0, 5.0]) < 1e-5
    _assert_valid_decomposition(res, a, 2e-6)


def test_indefinite_operator():
    with jax.enable_x64(True):
        levels = np.array([-3.0, -2.0, -1.2, -0.5, -0.1, 0.2, 0.7, 1.0, 1.5, 2.5, 3.0, 4.0])
        op, a = _operator(np.repeat(levels, D // M), seed=4, dtype=jnp.float64)
        res = lanczos(op, _start(dtype=jnp.float64), M, return_basis=True)
        np.testing.assert_allclose(tridiagonal_eigh(res.alphas, res.betas).values, levels,
                                   atol=1e-10)
        _assert_valid_decomposition(res, a, 1e-12)


def test_float32_basis_is_orthonormal_with_reorthogonalisation():
    rng = np.random.default_rng(5)
    eigs = np.concatenate([rng.exponential(size=390), [50.0, 40.0, 30.0, 20.0, 10.0]])
    op, _ = _operator(eigs, seed=5)
    res = lanczos(op, _start(395), 80, return_basis=True)
    q = np.asarray(res.basis, np.float64)
    assert np.abs(q @ q.T - np.eye(80)).max() < 1e-6
    top = np.sort(tridiagonal_eigh(res.alphas, res.betas).values)[-5:]
    np.testing.assert_allclose(top, [10.0, 20.0, 30.0, 40.0, 50.0], rtol=1e-5)


def test_plain_recurrence_matches_reorthogonalised_for_few_steps():
    with jax.enable_x64(True):
        op, _ = _operator(np.linspace(1.0, 2.0, D), seed=6, dtype=jnp.float64)
        z = _start(dtype=jnp.float64)
        full = lanczos(op, z, M, return_basis=True)
        plain = lanczos(op, z, M, reorthogonalize=False)
        assert plain.basis is None and int(plain.length) == M
        np.testing.assert_allclose(plain.alphas[:6], full.alphas[:6], rtol=1e-10)
        np.testing.assert_allclose(plain.betas[:6], full.betas[:6], rtol=1e-8)


def test_plain_recurrence_stops_at_breakdown():
    op, _ = _operator([7.0, -1.0, 3.0] + [0.0] * (D - 3))
    res = lanczos(op, _start(), M, reorthogonalize=False)
    assert int(res.length) == 4
    assert np.all(np.asarray(res.alphas[4:]) == 0) and np.all(np.asarray(res.betas[3:]) == 0)
    ritz = tridiagonal_eigh(res.alphas, res.betas)
    short = tridiagonal_eigh(res.alphas[:4], res.betas[:4])
    np.testing.assert_allclose(np.sort(short.values)[[0, 2, 3]], [-1.0, 3.0, 7.0], rtol=1e-5)
    # the zero padding adds only zero-weight nodes: the quadrature is that of T_4
    for p in range(4):
        assert np.sum(ritz.weights * ritz.values**p) == pytest.approx(
            np.sum(short.weights * short.values**p), rel=1e-9, abs=1e-12)


def test_zero_operator_has_no_nan():
    op, _ = _operator(np.zeros(D))
    res = lanczos(op, _start(), M, return_basis=True)
    np.testing.assert_array_equal(res.alphas, 0.0)
    np.testing.assert_array_equal(res.betas, 0.0)
    q = np.asarray(res.basis)
    np.testing.assert_allclose(q @ q.T, np.eye(M), atol=1e-6)


def test_gauss_quadrature_is_exact_for_low_degree_moments():
    with jax.enable_x64(True):
        op, a = _operator(np.linspace(-1.0, 1.2, D), seed=7, dtype=jnp.float64)
        z = _start(dtype=jnp.float64)
        res = lanczos(op, z, M, return_basis=True)
        ritz = tridiagonal_eigh(res.alphas, res.betas)
        q1 = np.asarray(z) / np.linalg.norm(z)
        for p in range(2 * M):  # exact up to degree 2m - 1
            want = q1 @ np.linalg.matrix_power(a, p) @ q1
            assert np.sum(ritz.weights * ritz.values**p) == pytest.approx(want, abs=1e-10)
        # and not beyond: the m-node rule misses degree 2m for a spectrum with > m points
        want = q1 @ np.linalg.matrix_power(a, 2 * M) @ q1
        assert abs(np.sum(ritz.weights * ritz.values ** (2 * M)) - want) > 1e-8


def test_ritz_residuals_equal_true_residual_norms():
    with jax.enable_x64(True):
        op, a = _operator(np.linspace(0.0, 1.0, D) ** 3, seed=8, dtype=jnp.float64)
        res = lanczos(op, _start(dtype=jnp.float64), M, return_basis=True)
        ritz = tridiagonal_eigh(res.alphas, res.betas)
        y = ritz.vectors.T @ np.asarray(res.basis)  # Ritz vectors, one per row
        true = np.linalg.norm(y @ a - ritz.values[:, None] * y, axis=1)
        np.testing.assert_allclose(ritz.residuals, true, atol=1e-10)
        assert ritz.residuals.max() > 1e-3  # not all converged: the check is not vacuous


def test_tridiagonal_eigh_matches_scipy_and_batches():
    rng = np.random.default_rng(9)
    a, b = rng.normal(size=(3, 7)), np.abs(rng.normal(size=(3, 7)))
    out = tridiagonal_eigh(a, b)
    for i in range(3):
        w, s = scipy.linalg.eigh_tridiagonal(a[i], b[i, :-1])
        np.testing.assert_allclose(out.values[i], w, atol=1e-12)
        np.testing.assert_allclose(out.weights[i], s[0] ** 2, atol=1e-12)
        np.testing.assert_allclose(out.residuals[i], np.abs(b[i, -1] * s[-1]), atol=1e-12)
    np.testing.assert_allclose(out.weights.sum(axis=1), 1.0, rtol=1e-12)


def test_pytree_start_vector_and_basis():
    d = {"a": jnp.arange(1.0, 4.0), "b": jnp.arange(4.0, 6.0).reshape(1, 2)}
    op = Partial(lambda dd, v: jax.tree.map(jnp.multiply, dd, v), d)
    v0 = jax.tree.map(jnp.ones_like, d)
    res = lanczos(op, v0, 5, return_basis=True)
    assert res.basis["a"].shape == (5, 3) and res.basis["b"].shape == (5, 1, 2)
    np.testing.assert_allclose(tridiagonal_eigh(res.alphas, res.betas).values,
                               [1.0, 2.0, 3.0, 4.0, 5.0], rtol=1e-5)


def test_factory_runs_on_flat_vectors_and_keeps_q_m_plus_1():
    """``lanczos_tridiag(m)`` -> ``run(matvec, v0, seed)``: ``H Q = Q T + beta_m q_{m+1} e_m^T``
    with the stored row ``m`` (SPEC 1.2)."""
    with jax.enable_x64(True):
        op, a = _operator(np.linspace(-1.0, 3.0, D), seed=11, dtype=jnp.float64)
        run = lanczos_tridiag(M)
        res = jax.jit(lambda v, g: run(op, v, g))(_start(dtype=jnp.float64),
                                                  _start(seed=2, dtype=jnp.float64))
        q = np.asarray(res.basis)
        assert q.shape == (M + 1, D)
        np.testing.assert_allclose(q @ q.T, np.eye(M + 1), atol=1e-12)
        lhs = a @ q[:M].T
        rhs = q[:M].T @ _tridiag(res) + np.outer(q[M], np.eye(M)[-1]) * float(res.betas[-1])
        np.testing.assert_allclose(lhs, rhs, atol=1e-10)
        plain = lanczos_tridiag(M, reortho="none")(op, _start(dtype=jnp.float64), None)
        assert plain.basis is None and int(plain.length) == M


def test_host_offloaded_basis_gives_the_device_result():
    """``offload_basis=True`` (3 blocks of 6 rows streamed from host memory; the same RAM on
    CPU), across a breakdown of the rank-3 operator; Ritz vectors combined block by block."""
    op, a = _operator([7.0, -1.0, 3.0] + [0.0] * (D - 3), seed=13)
    dev = lanczos(op, _start(), 17)
    host = lanczos(op, _start(), 17, offload_basis=True)
    np.testing.assert_allclose(host.alphas, dev.alphas, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(host.betas, dev.betas, rtol=1e-5, atol=1e-5)
    top = top_eigenvalues(op, _start(), key=jax.random.key(0), k=2, num_steps=17,
                          offload_basis=True)
    np.testing.assert_allclose(top.eigenvalues, [7.0, 3.0], rtol=1e-5)
    vecs = np.asarray(top.eigenvectors, np.float64)
    np.testing.assert_allclose(vecs @ a, top.eigenvalues[:, None] * vecs, atol=1e-4)


def test_vmapped_probes_where_only_some_break_down():
    """Under vmap the restart runs for the probes that broke down and leaves the others as
    they would be alone (the restart is a batched while_loop, not a cond-turned-select)."""
    with jax.enable_x64(True):
        d = np.repeat([1.0, 2.0, 3.0, 4.0], D // 4)
        op = Partial(jnp.matmul, jnp.asarray(np.diag(d)))
        generic = _start(dtype=jnp.float64)                   # Krylov dimension 4
        special = jnp.zeros(D, jnp.float64).at[0].set(1.0).at[-1].set(1.0)  # dimension 2
        starts = jnp.stack([generic, special])
        batched = jax.vmap(lambda v: lanczos(op, v, 8, return_basis=True))(starts)
        for i, breaks_at in ((0, 3), (1, 1)):
            one = lanczos(op, starts[i], 8, return_basis=True)
            np.testing.assert_allclose(batched.alphas[i], one.alphas, atol=1e-12)
            np.testing.assert_allclose(batched.betas[i], one.betas, atol=1e-12)
            assert float(batched.betas[i][breaks_at]) == 0.0
            assert np.all(np.asarray(batched.betas[i][:breaks_at]) > 0)
            q = np.asarray(batched.basis[i])
            assert np.abs(q @ q.T - np.eye(8)).max() < 1e-12
            tri = (np.diag(batched.alphas[i]) + np.diag(batched.betas[i][:-1], 1)
                   + np.diag(batched.betas[i][:-1], -1))
            assert np.abs(q @ np.diag(d) @ q.T - tri).max() < 1e-12
