"""Top eigenpairs, Hutchinson and SLQ (SPEC 1.3) against dense Hessians and known spectra."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.tree_util import Partial

from prune_jax.curvature import (
    SpectralQuadrature,
    hutchinson_trace,
    hvp_operator,
    slq,
    top_eigenvalues,
)
from prune_jax.tree import ravel


def _mlp_loss(params, batch):
    x, y = batch
    h = jnp.tanh(x @ params["w1"] + params["b1"])
    logp = jax.nn.log_softmax(h @ params["w2"] + params["b2"])
    return -jnp.mean(jnp.take_along_axis(logp, y[:, None], axis=1))


def _mlp_problem(n_in: int, n_hidden: int, n_out: int, seed: int = 0):
    """float64 MLP on random data (2 batches of 32) and its dense Hessian's eigenvalues."""
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
    """The float64 MLP problem with D = 1208, shared by the tests below (one dense Hessian)."""
    with jax.enable_x64(True):
        return _mlp_problem(16, 48, 8)


def _check_top_five(params, batches, hess, num_steps):
    with jax.enable_x64(True):
        exact = np.sort(np.linalg.eigvalsh(hess))[::-1][:5]
        op = hvp_operator(_mlp_loss, params, batches)
        top = top_eigenvalues(op, params, key=jax.random.key(0), k=5, num_steps=num_steps)
        np.testing.assert_allclose(top.eigenvalues, exact, rtol=1e-4)
        assert np.all(np.diff(top.eigenvalues) <= 0)
        # eigenvectors: unit pytrees with H y ~ theta y, residuals as reported
        vecs = np.asarray(jax.vmap(lambda t: ravel(t)[0])(top.eigenvectors))
        np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, rtol=1e-8)
        res = np.linalg.norm(vecs @ hess - top.eigenvalues[:, None] * vecs, axis=1)
        np.testing.assert_allclose(res, top.residuals, atol=1e-8)
        assert jax.tree.structure(top.eigenvectors) == jax.tree.structure(params)
        assert top.eigenvectors["w1"].shape == (5, *params["w1"].shape)


def test_top_eigenvalues_match_dense_hessian(mlp):
    _check_top_five(*mlp, num_steps=80)  # D = 1208


@pytest.mark.slow
def test_top_eigenvalues_match_dense_hessian_two_thousand_params():
    with jax.enable_x64(True):
        _check_top_five(*_mlp_problem(24, 64, 10), num_steps=120)  # D = 2250


def test_trace_and_frobenius_within_three_standard_errors(mlp):
    with jax.enable_x64(True):
        params, batches, hess = mlp
        dim = hess.shape[0]
        op = hvp_operator(_mlp_loss, params, batches)
        key = jax.random.key(3)
        q = slq(op, params, key=key, num_probes=30, num_steps=10)
        assert q.nodes.shape == q.weights.shape == (30, 10) and q.dim == dim
        np.testing.assert_allclose(q.weights.sum(axis=1), 1.0, rtol=1e-12)
        trace, fro2 = np.trace(hess), np.sum(hess**2)
        est = q.estimate(lambda x: x)
        assert abs(est.estimate * dim - trace) < 3 * est.stderr * dim
        est2 = q.estimate(lambda x: x**2)
        assert abs(est2.estimate - fro2 / dim) < 3 * est2.stderr
        hutch = hutchinson_trace(op, params, key=key, num_probes=30)
        assert abs(hutch.estimate - trace) < 3 * hutch.stderr
        # the same key gives the same probes: SLQ's first moment is Hutchinson's estimate
        assert q.expect(lambda x: x) * dim == pytest.approx(hutch.estimate, rel=1e-10)
        np.testing.assert_allclose(q.per_probe(lambda x: x) * dim, hutch.samples, rtol=1e-10)


def _diag(d, dtype=jnp.float32):
    """diag(d) as an operator; ``jnp.multiply`` is one shared static part (shared programs)."""
    return Partial(jnp.multiply, jnp.asarray(d, dtype))


def test_slq_moments_of_known_spectrum_are_exact_per_probe():
    with jax.enable_x64(True):
        d = np.linspace(-2.0, 3.0, 60)
        like = jnp.zeros(60, jnp.float64)
        q = slq(_diag(d, jnp.float64), like, key=jax.random.key(1), num_probes=6, num_steps=10)
        for p in range(20):  # Gauss quadrature with 10 nodes is exact to degree 19
            np.testing.assert_allclose(q.per_probe(lambda x, p=p: x**p), np.mean(d**p),
                                       rtol=1e-9, atol=1e-12)
        assert q.stderr(lambda x: x**3) < 1e-12


def test_density_is_a_normalised_smoothing_of_the_nodes():
    d = np.repeat([1.0, 4.0], 30)
    q = slq(_diag(d), jnp.zeros(60), key=jax.random.key(2), num_probes=6, num_steps=10)
    grid = np.linspace(-2.0, 7.0, 2001)
    dens = q.density(grid, sigma=0.1)
    assert np.sum(dens) * (grid[1] - grid[0]) == pytest.approx(1.0, rel=1e-4)
    peak = lambda c: dens[np.argmin(np.abs(grid - c))]
    assert peak(1.0) == pytest.approx(peak(4.0), rel=1e-3)  # equal masses at 1 and 4
    assert peak(1.0) == pytest.approx(0.5 / (0.1 * np.sqrt(2 * np.pi)), rel=1e-3)


def test_chunked_and_sequential_probes_equal_vmapped():
    op = _diag(np.linspace(0.1, 2.0, 60) ** 2)
    kw = dict(key=jax.random.key(4), num_probes=6, num_steps=10)
    ref = slq(op, jnp.zeros(60), **kw)  # all 6 probes in one vmap
    chunked = slq(op, jnp.zeros(60), batch_size=3, **kw)  # lax.map over two chunks of 3
    np.testing.assert_allclose(chunked.nodes, ref.nodes, atol=1e-5)
    np.testing.assert_allclose(chunked.weights, ref.weights, atol=1e-5)
    tiny = slq(op, jnp.zeros(60), max_memory_bytes=3 * 11 * 60 * 4, **kw)  # 3 bases fit
    np.testing.assert_array_equal(tiny.nodes, chunked.nodes)
    # chunked Hutchinson: same probes, so z^T A z = D * (first moment of each probe)
    hutch = hutchinson_trace(op, jnp.zeros(60), key=jax.random.key(4), num_probes=6,
                             batch_size=3)
    np.testing.assert_allclose(hutch.samples, ref.per_probe(lambda x: x) * 60, rtol=1e-5)


def test_plain_slq_without_basis():
    with jax.enable_x64(True):
        d = np.linspace(0.0, 1.0, 60)
        q = slq(_diag(d, jnp.float64), jnp.zeros(60, jnp.float64), key=jax.random.key(5),
                num_probes=6, num_steps=10, reorthogonalize=False)
        for p in range(6):
            np.testing.assert_allclose(q.per_probe(lambda x, p=p: x**p), np.mean(d**p),
                                       rtol=1e-8, atol=1e-12)


def test_top_eigenvalues_by_magnitude_and_shape_struct_like():
    d = np.array([-9.0, -1.0, 0.5, 2.0, 3.0, 4.0])
    like = jax.ShapeDtypeStruct((6,), jnp.float32)
    alg = top_eigenvalues(_diag(d), like, key=jax.random.key(0), k=2, num_steps=6)
    np.testing.assert_allclose(alg.eigenvalues, [4.0, 3.0], rtol=1e-5)
    mag = top_eigenvalues(_diag(d), like, key=jax.random.key(0), k=2, num_steps=6,
                          by_magnitude=True)
    np.testing.assert_allclose(mag.eigenvalues, [-9.0, 4.0], rtol=1e-5)
    np.testing.assert_allclose(np.abs(mag.eigenvectors[0]), np.eye(6)[0], atol=1e-4)


def test_quadrature_rejects_non_elementwise_functions():
    q = SpectralQuadrature(np.zeros((2, 3)), np.full((2, 3), 1 / 3), 10)
    with pytest.raises(ValueError, match="f must act elementwise"):
        q.expect(lambda x: x.sum())
    with pytest.raises(ValueError, match="sigma"):
        q.density(np.zeros(3), sigma=0.0)
    assert np.isnan(SpectralQuadrature(np.zeros((1, 2)), np.ones((1, 2)) / 2, 4).stderr(
        lambda x: x))


def _dense_residuals(top, dense):
    """``||A y_k - theta_k y_k||_2`` of the returned Ritz pairs, in float64 with a dense ``A``."""
    vecs = np.asarray(top.eigenvectors, np.float64)
    return np.linalg.norm(vecs @ dense - top.eigenvalues[:, None] * vecs, axis=1)


def _symmetric(dim: int, seed: int) -> np.ndarray:
    a = np.random.default_rng(seed).normal(size=(dim, dim))
    return (a + a.T) / 2


def test_top_residuals_are_true_residual_norms_float32():
    """float32: ``.residuals`` are ``||H y - theta y||`` (rounding floor > 0), not the Lanczos
    estimates ``|beta_m s_{m,k}|`` (0 or ~1e-30 for converged pairs)."""
    mat = jnp.asarray(_symmetric(60, 0), jnp.float32)
    dense = np.asarray(mat, np.float64)  # the float32 operator's exact matrix
    op = Partial(jnp.matmul, mat)
    top = top_eigenvalues(op, jnp.zeros(60), key=jax.random.key(0), k=4, num_steps=60)
    assert top.residuals.dtype == top.lanczos_residuals.dtype == np.float64
    assert top.residuals.shape == top.lanczos_residuals.shape == (4,)
    np.testing.assert_allclose(np.linalg.norm(np.asarray(top.eigenvectors), axis=1), 1.0,
                               rtol=1e-6)
    floor = float(jnp.finfo(jnp.float32).eps) * np.linalg.norm(dense, 2)
    # the float32 products differ from the float64 dense ones by rounding, ~eps ||A||
    np.testing.assert_allclose(top.residuals, _dense_residuals(top, dense), rtol=0,
                               atol=4 * floor)
    assert np.all(top.residuals > 0)  # converged pairs sit at the rounding floor, not at 0
    assert np.all(top.residuals < 50 * floor)
    assert np.all(top.lanczos_residuals < 1e-6 * floor)  # the estimate ignores rounding
    # chunked residual products (lax.map) agree with the vmapped ones up to rounding
    chunked = top_eigenvalues(op, jnp.zeros(60), key=jax.random.key(0), k=4, num_steps=60,
                              batch_size=3)
    np.testing.assert_allclose(chunked.residuals, top.residuals, rtol=0, atol=floor)


def test_top_residuals_float64_exact_pairs_and_lanczos_estimate():
    with jax.enable_x64(True):
        # exactly known eigenpairs: diag(d) has eigenvectors e_i, the residuals are tiny
        d = np.linspace(1.0, 5.0, 30)
        top = top_eigenvalues(_diag(d, jnp.float64), jnp.zeros(30, jnp.float64),
                              key=jax.random.key(1), k=3, num_steps=30)
        np.testing.assert_allclose(top.eigenvalues, d[::-1][:3], rtol=1e-12)
        assert np.all(top.residuals < 1e-12)
        np.testing.assert_allclose(top.residuals, _dense_residuals(top, np.diag(d)),
                                   atol=1e-13)
        # a generic operator with unconverged pairs (m < D): in float64 the true residual
        # equals the dense one, and the Lanczos estimate |beta_m s_{m,k}| agrees with it
        dense = _symmetric(80, 1)
        top = top_eigenvalues(Partial(jnp.matmul, jnp.asarray(dense)),
                              jnp.zeros(80, jnp.float64), key=jax.random.key(2), k=5,
                              num_steps=20)
        np.testing.assert_allclose(top.residuals, _dense_residuals(top, dense), atol=1e-12)
        np.testing.assert_allclose(top.lanczos_residuals, top.residuals, rtol=1e-6,
                                   atol=1e-10)
        assert top.residuals.max() > 1e-3  # not all converged: the comparison is not vacuous
