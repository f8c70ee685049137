"""Top eigenpairs, traces and SLQ (SPEC 1.3) against dense Hessians and known spectra.

The dense operators share one shape (D = 60) and one static part (``jnp.matmul`` or
``jnp.multiply``), so that the tests share their compiled programs.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.tree_util import Partial

from prune_jax.curvature import (
    SpectralQuadrature,
    estimate_spectrum,
    hutchinson_trace,
    hvp_operator,
    slq,
    top_eigenvalues,
)
from prune_jax.curvature.hoist import hoist
from prune_jax.tree import ravel

D = 60


def _mlp_loss(params, batch):
    x, y = batch
    h = jnp.tanh(x @ params["w1"] + params["b1"])
    logp = jax.nn.log_softmax(h @ params["w2"] + params["b2"])
    return -jnp.mean(jnp.take_along_axis(logp, y[:, None], axis=1))


def _mlp_problem(n_in: int, n_hidden: int, n_out: int, seed: int = 0):
    """float64 MLP on random data (2 batches of 32) and its dense Hessian."""
    rng = np.random.default_rng(seed)
    params = {"w1": rng.normal(size=(n_in, n_hidden)) / np.sqrt(n_in),
              "b1": 0.1 * rng.normal(size=n_hidden),
              "w2": rng.normal(size=(n_hidden, n_out)) / np.sqrt(n_hidden),
              "b2": np.zeros(n_out)}
    params = jax.tree.map(jnp.asarray, params)
    batches = (jnp.asarray(rng.normal(size=(2, 32, n_in))),
               jnp.asarray(rng.integers(0, n_out, (2, 32))))
    flat, unravel = ravel(params)
    full = (batches[0].reshape(64, n_in), batches[1].reshape(64))
    hess = np.asarray(jax.jit(jax.hessian(lambda w: _mlp_loss(unravel(w), full)))(flat))
    return params, batches, (hess + hess.T) / 2


@pytest.fixture(scope="module")
def mlp():
    """The float64 MLP problem with D = 366 (one dense Hessian for the module)."""
    with jax.enable_x64(True):
        return _mlp_problem(8, 24, 6)


def _check_top_five(top, params, hess):
    exact = np.sort(np.linalg.eigvalsh(hess))[::-1][:5]
    np.testing.assert_allclose(top.eigenvalues, exact, rtol=1e-4)
    assert np.all(np.diff(top.eigenvalues) <= 0)
    vecs = np.asarray(jax.vmap(lambda t: ravel(t)[0])(top.eigenvectors))
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, rtol=1e-8)
    res = np.linalg.norm(vecs @ hess - top.eigenvalues[:, None] * vecs, axis=1)
    np.testing.assert_allclose(res, top.residuals, atol=1e-8)
    assert top.eigenvectors["w1"].shape == (5, *params["w1"].shape)


def test_estimate_spectrum_against_dense_eigh_and_exact_trace(mlp):
    """One pass: top five pairs, trace and quadrature of the MLP Hessian against ``eigh``."""
    with jax.enable_x64(True):
        params, batches, hess = mlp
        lam = np.linalg.eigvalsh(hess)
        op = hvp_operator(_mlp_loss, params, batches)
        s = estimate_spectrum(op, params, key=jax.random.key(1), num_probes=12, top_steps=60,
                              k=5, trace_rtol=None)  # the trace from the 11 other runs only
        _check_top_five(s.top, params, hess)
        assert s.top.residuals[0] < 1e-3 * lam[-1]
        assert s.trace.samples.size == 11
        assert abs(s.trace.estimate - lam.sum()) < 4 * s.trace.stderr
        q = s.quadrature
        assert q.dim == lam.size and q.nodes.shape == (12, 60)
        np.testing.assert_allclose(q.weights.sum(axis=1), 1.0, rtol=1e-12)
        m2 = q.estimate(lambda x: x ** 2)
        assert abs(m2.estimate - np.mean(lam ** 2)) < 4 * m2.stderr


@pytest.mark.slow
def test_top_eigenvalues_match_dense_hessian_two_thousand_params():
    with jax.enable_x64(True):
        params, batches, hess = _mlp_problem(24, 64, 10)  # D = 2250
        top = top_eigenvalues(hvp_operator(_mlp_loss, params, batches), params,
                              key=jax.random.key(0), k=5, num_steps=120)
        _check_top_five(top, params, hess)


def _dense(eigs, seed: int = 0, dtype=jnp.float32):
    """A symmetric matrix with spectrum ``eigs`` in a random basis, as an operator."""
    u = np.linalg.qr(np.random.default_rng(seed).normal(size=(len(eigs), len(eigs))))[0]
    a = (u * np.asarray(eigs)) @ u.T
    a = (a + a.T) / 2
    return Partial(jnp.matmul, jnp.asarray(a, dtype)), a


def test_deflated_trace_is_unbiased_and_the_adaptive_trace_reaches_its_tolerance():
    """Outliers in a random basis: over many seeds the deflated (Hutch++-style) trace is
    unbiased and much less noisy than Hutchinson's with as many probes. On a flat spectrum
    (no deflation gain) the adaptive trace adds probes until its standard error is 2%."""
    eigs = np.concatenate([[40.0, 25.0, 12.0], np.linspace(0.1, 1.0, D - 3)])
    op, a = _dense(eigs, seed=3)
    like = jnp.zeros(D)
    op = hoist(op, like)  # hoisted once (every call would otherwise trace it again)
    kw = dict(num_probes=9, num_steps=3, top_steps=6)  # one compiled program for both parts
    est, plain = [], []
    for seed in range(64):
        s = estimate_spectrum(op, like, key=jax.random.key(seed), trace_rtol=None, **kw)
        est.append(s.trace.estimate)
        plain.append(np.mean(s.quadrature.per_probe(lambda x: x)[1:]) * D)  # z^T H z
    est, plain = np.array(est), np.array(plain)
    sem = est.std(ddof=1) / np.sqrt(est.size)
    assert abs(est.mean() - np.trace(a)) < 3 * sem
    assert est.std() < 0.5 * plain.std()

    flat, a = _dense(np.linspace(-1.0, 3.0, D), seed=4)
    s = estimate_spectrum(flat, like, key=jax.random.key(2), trace_rtol=0.02, **kw)
    assert s.trace.stderr <= 0.02 * abs(s.trace.estimate)
    assert abs(s.trace.estimate - np.trace(a)) < 4 * s.trace.stderr


def _diag(d, dtype=jnp.float32):
    """diag(d) as an operator; ``jnp.multiply`` is one shared static part (shared programs)."""
    return Partial(jnp.multiply, jnp.asarray(d, dtype))


def test_slq_moments_of_known_spectrum_are_exact_per_probe():
    with jax.enable_x64(True):
        d = np.linspace(-2.0, 3.0, D)
        q = slq(_diag(d, jnp.float64), jnp.zeros(D, jnp.float64), key=jax.random.key(1),
                num_probes=6, num_steps=10)
        for p in range(20):  # Gauss quadrature with 10 nodes is exact to degree 19
            np.testing.assert_allclose(q.per_probe(lambda x, p=p: x**p), np.mean(d**p),
                                       rtol=1e-9, atol=1e-12)
        assert q.stderr(lambda x: x**3) < 1e-12


def test_plain_slq_and_density_view():
    d = np.repeat([1.0, 4.0], D // 2)
    q = slq(_diag(d), jnp.zeros(D), key=jax.random.key(2), num_probes=6, num_steps=10,
            reorthogonalize=False)
    for p in range(4):  # the recurrence stops at the breakdown: exact moments
        np.testing.assert_allclose(q.per_probe(lambda x, p=p: x**p), np.mean(d**p), rtol=1e-5)
    grid = np.linspace(-2.0, 7.0, 2001)
    dens = q.density(grid, sigma=0.1)
    assert np.sum(dens) * (grid[1] - grid[0]) == pytest.approx(1.0, rel=1e-4)
    peak = lambda c: dens[np.argmin(np.abs(grid - c))]
    assert peak(1.0) == pytest.approx(0.5 / (0.1 * np.sqrt(2 * np.pi)), rel=1e-3)


def test_chunked_probes_equal_sequential_and_share_hutchinsons_probes():
    op, a = _dense(np.linspace(0.1, 2.0, D) ** 2, seed=7)
    kw = dict(key=jax.random.key(4), num_probes=30, num_steps=10)
    ref = slq(op, jnp.zeros(D), batch_size=1, **kw)  # lax.map, one probe at a time
    chunked = slq(op, jnp.zeros(D), batch_size=10, **kw)  # vmapped chunks of 10
    np.testing.assert_allclose(chunked.nodes, ref.nodes, atol=1e-5)
    np.testing.assert_allclose(chunked.weights, ref.weights, atol=1e-5)
    hutch = hutchinson_trace(op, jnp.zeros(D), key=jax.random.key(4), num_probes=30,
                             batch_size=10)
    # the same key gives the same probes: z^T A z = D * (first moment of each probe)
    np.testing.assert_allclose(hutch.samples, ref.per_probe(lambda x: x) * D, rtol=1e-5)
    assert abs(hutch.estimate - np.trace(a)) < 3 * hutch.stderr
    m2 = ref.estimate(lambda x: x ** 2)  # (1/D) ||A||_F^2, exact per probe for m >= 2
    assert abs(m2.estimate - np.sum(a ** 2) / D) < 4 * m2.stderr


def test_quadrature_rejects_non_elementwise_functions():
    q = SpectralQuadrature(np.zeros((2, 3)), np.full((2, 3), 1 / 3), 10)
    with pytest.raises(ValueError, match="f must act elementwise"):
        q.expect(lambda x: x.sum())
    with pytest.raises(ValueError, match="sigma"):
        q.density(np.zeros(3), sigma=0.0)
    assert np.isnan(SpectralQuadrature(np.zeros((1, 2)), np.ones((1, 2)) / 2, 4).stderr(
        lambda x: x))


def test_top_residuals_are_true_residual_norms_float32():
    """float32: ``.residuals`` are ``||H y - theta y||`` (rounding floor > 0), not the Lanczos
    estimates ``|beta_m s_{m,k}|`` (0 or ~1e-30 for converged pairs)."""
    op, dense = _dense(np.random.default_rng(0).normal(size=D) * 3, seed=5)
    dense = np.asarray(op.args[0], np.float64)  # the float32 operator's exact matrix
    top = top_eigenvalues(op, jnp.zeros(D), key=jax.random.key(0), k=4, num_steps=D)
    vecs = np.asarray(top.eigenvectors, np.float64)
    true = np.linalg.norm(vecs @ dense - top.eigenvalues[:, None] * vecs, axis=1)
    floor = float(jnp.finfo(jnp.float32).eps) * np.linalg.norm(dense, 2)
    np.testing.assert_allclose(top.residuals, true, rtol=0, atol=4 * floor)
    assert np.all(top.residuals > 0) and np.all(top.residuals < 50 * floor)
    assert np.all(top.lanczos_residuals < 1e-6 * floor)  # the estimate ignores rounding
    # ranked by |theta|, with a ShapeDtypeStruct for ``like``
    mag = top_eigenvalues(op, jax.ShapeDtypeStruct((D,), jnp.float32), key=jax.random.key(0),
                          k=4, num_steps=D, by_magnitude=True)
    lam = np.linalg.eigvalsh(dense)
    np.testing.assert_allclose(mag.eigenvalues, lam[np.argsort(-np.abs(lam))[:4]], rtol=1e-4)


def test_top_residuals_float64_unconverged_pairs_and_lanczos_estimate():
    with jax.enable_x64(True):
        op, dense = _dense(np.random.default_rng(1).normal(size=D), seed=6,
                           dtype=jnp.float64)
        top = top_eigenvalues(op, jnp.zeros(D, jnp.float64), key=jax.random.key(2), k=5,
                              num_steps=20)
        vecs = np.asarray(top.eigenvectors)
        true = np.linalg.norm(vecs @ dense - top.eigenvalues[:, None] * vecs, axis=1)
        np.testing.assert_allclose(top.residuals, true, atol=1e-12)
        np.testing.assert_allclose(top.lanczos_residuals, top.residuals, rtol=1e-6,
                                   atol=1e-10)
        assert top.residuals.max() > 1e-3  # not all converged: the comparison is not vacuous
