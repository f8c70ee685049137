"""Bad input raises a clear error that names the argument (curvature engine)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.tree_util import Partial

from prune_jax.curvature import (
    SpectralQuadrature,
    add_zero_atom,
    dataset_hvp,
    estimate_spectrum,
    hessian_row_zero_mass,
    hutchinson_trace,
    hvp,
    hvp_operator,
    lanczos,
    slq,
    slq_zero_mass,
    top_eigenvalues,
    tridiagonal_eigh,
)

KEY = jax.random.key(0)
OP = Partial(lambda v: 2.0 * v)
LIKE = jnp.zeros(5)


@pytest.mark.parametrize("kwargs, exc, match", [
    (dict(num_steps=0), ValueError, "num_steps"),
    (dict(num_steps=6), ValueError, "num_steps"),
    (dict(num_steps=2.0), TypeError, "num_steps"),
    (dict(num_steps=True), TypeError, "num_steps"),
    (dict(num_steps=3, reorthogonalize=False, return_basis=True), ValueError, "return_basis"),
    (dict(num_steps=3, reorthogonalize=False, offload_basis=True), ValueError, "offload"),
    (dict(num_steps=3, offload_basis=True, return_basis=True), ValueError, "return_basis"),
    (dict(num_steps=3, reorthogonalize=1), TypeError, "reorthogonalize"),
    (dict(num_steps=3, key=np.arange(3)), TypeError, "key"),
    (dict(num_steps=3, tol=2.0), ValueError, "tol"),
    (dict(num_steps=3, mesh="data"), TypeError, "mesh"),
])
def test_lanczos_argument_errors(kwargs, exc, match):
    num_steps = kwargs.pop("num_steps")
    with pytest.raises(exc, match=match):
        lanczos(OP, jnp.ones(5), num_steps, **kwargs)


def test_lanczos_bad_start_and_operator():
    with pytest.raises(ValueError, match="v0 must be a non-zero"):
        lanczos(OP, jnp.zeros(5), 3)
    with pytest.raises(ValueError, match="v0 must be a non-zero, finite"):
        lanczos(OP, jnp.array([1.0, jnp.nan, 0.0, 0.0, 0.0]), 2)
    with pytest.raises(TypeError, match="v0"):
        lanczos(OP, jnp.arange(5), 3)
    with pytest.raises(TypeError, match="matvec must be callable"):
        lanczos(jnp.ones(5), jnp.ones(5), 3)
    with pytest.raises(ValueError, match=r"matvec\(v0\)"):
        lanczos(Partial(lambda v: v[:3]), jnp.ones(5), 3)
    with pytest.raises(ValueError, match=r"matvec\(v0\)"):
        lanczos(Partial(lambda v: {"a": v}), jnp.ones(5), 3)
    with pytest.raises(ValueError, match="matvec could not be applied"):
        lanczos(Partial(lambda v: v @ jnp.ones((3, 3))), jnp.ones(5), 3)


def test_non_finite_matvec_is_reported_after_the_loop():
    nan_op = Partial(lambda v: v * jnp.nan)
    with pytest.raises(ValueError, match=r"matvec.*NaN or Inf"):
        lanczos(nan_op, jnp.ones(5), 3)
    with pytest.raises(ValueError, match="NaN or Inf"):
        slq(nan_op, LIKE, key=KEY, num_probes=2, num_steps=2, reorthogonalize=False)
    with pytest.raises(ValueError, match="NaN or Inf"):
        hutchinson_trace(nan_op, LIKE, key=KEY, num_probes=2)
    with pytest.raises(ValueError, match="NaN or Inf"):
        hessian_row_zero_mass(nan_op, jnp.ones(5), num_rows=2)
    with pytest.raises(ValueError, match="NaN or Inf"):
        tridiagonal_eigh(np.array([np.nan]), np.array([0.0]))


def test_spectrum_argument_errors():
    with pytest.raises(ValueError, match="k must be"):
        top_eigenvalues(OP, LIKE, key=KEY, k=4, num_steps=3)
    with pytest.raises(ValueError, match="k must be"):
        top_eigenvalues(OP, LIKE, key=KEY, k=0, num_steps=3)
    with pytest.raises(ValueError, match="num_steps"):
        top_eigenvalues(OP, LIKE, key=KEY, k=1, num_steps=9)
    with pytest.raises(TypeError, match="key"):
        top_eigenvalues(OP, LIKE, key=0, k=1, num_steps=3)
    with pytest.raises(TypeError, match="by_magnitude"):
        top_eigenvalues(OP, LIKE, key=KEY, k=1, num_steps=3, by_magnitude="yes")
    with pytest.raises(ValueError, match="tol"):
        slq(OP, LIKE, key=KEY, num_probes=2, num_steps=2, tol=-1.0)
    with pytest.raises(ValueError, match="num_probes"):
        slq(OP, LIKE, key=KEY, num_probes=0, num_steps=3)
    with pytest.raises(ValueError, match="num_steps"):
        slq(OP, LIKE, key=KEY, num_probes=2, num_steps=0)
    with pytest.raises(ValueError, match="batch_size"):
        slq(OP, LIKE, key=KEY, num_probes=2, num_steps=2, batch_size=0)
    with pytest.raises(ValueError, match="max_memory_bytes"):
        slq(OP, LIKE, key=KEY, num_probes=2, num_steps=2, max_memory_bytes=0)
    with pytest.raises(ValueError, match="batch_size"):
        slq(OP, LIKE, key=KEY, num_probes=2, num_steps=2, offload_basis=True, batch_size=2)
    with pytest.raises(TypeError, match="offload_basis"):
        slq(OP, LIKE, key=KEY, num_probes=2, num_steps=2, offload_basis=1)
    with pytest.raises(ValueError, match="num_probes"):
        estimate_spectrum(OP, LIKE, key=KEY, num_probes=1)
    with pytest.raises(ValueError, match="trace_rtol"):
        estimate_spectrum(OP, LIKE, key=KEY, num_steps=2, top_steps=3, trace_rtol=-0.1)
    with pytest.raises(ValueError, match="k must be"):
        estimate_spectrum(OP, LIKE, key=KEY, num_steps=2, top_steps=3, k=4)
    with pytest.raises(ValueError, match="num_probes"):
        hutchinson_trace(OP, LIKE, key=KEY, num_probes=0)
    with pytest.raises(ValueError, match="like"):
        slq(OP, {}, key=KEY, num_probes=2, num_steps=2)
    with pytest.raises(ValueError, match=r"matvec\(like\)"):
        hutchinson_trace(Partial(lambda v: (v, v)), LIKE, key=KEY, num_probes=2)


def test_explicit_mesh_arrays_get_one_clear_error():
    """A one-device mesh with Explicit axes (jax.make_mesh's default) is enough to trip it."""
    from jax.sharding import AxisType, NamedSharding
    from jax.sharding import PartitionSpec as P

    mesh = jax.make_mesh((1,), ("data",), axis_types=(AxisType.Explicit,))
    x = jax.device_put(jnp.ones(5), NamedSharding(mesh, P()))
    for call in (lambda: slq(OP, x, key=KEY, num_probes=2, num_steps=2),
                 lambda: lanczos(OP, x, 2),
                 lambda: hvp_operator(lambda p: jnp.sum(p ** 2), x),
                 lambda: hvp(lambda p: jnp.sum(p ** 2), x, x),
                 lambda: hutchinson_trace(Partial(jnp.multiply, x), LIKE, key=KEY,
                                          num_probes=2)):
        with pytest.raises(ValueError, match="Explicit axes"):
            call()


def test_hvp_argument_errors():
    loss = lambda p: jnp.sum(p["w"] ** 2)
    params = {"w": jnp.ones(3)}
    with pytest.raises(ValueError, match="v must have the same tree structure"):
        hvp(loss, params, {"u": jnp.ones(3)})
    with pytest.raises(ValueError, match="v leaf 'w' has shape"):
        hvp(loss, params, {"w": jnp.ones(4)})
    with pytest.raises(TypeError, match="v leaf 'w' has dtype"):
        with jax.enable_x64(True):
            hvp(loss, params, {"w": jnp.ones(3, jnp.float64)})
    with pytest.raises(ValueError, match="params contains NaN"):
        hvp(loss, {"w": jnp.array([1.0, jnp.inf, 0.0])}, params)
    with pytest.raises(ValueError, match="v contains NaN"):
        hvp(loss, params, {"w": jnp.array([1.0, jnp.nan, 0.0])})
    with pytest.raises(ValueError, match="HVP produced NaN or Inf"):   # finite inputs
        hvp(lambda p: jnp.sum(jnp.log(p["w"] - 1.0)), params, params)
    with pytest.raises(TypeError, match="loss_fn"):
        hvp(None, params, params)
    with pytest.raises(TypeError, match="params"):
        hvp(loss, {"w": jnp.arange(3)}, {"w": jnp.arange(3)})


def test_dataset_argument_errors():
    loss = lambda p, b: jnp.mean((b @ p) ** 2)
    p, v = jnp.ones(2), jnp.ones(2)
    batches = jnp.ones((3, 4, 2))
    with pytest.raises(ValueError, match="batch_sizes must have shape"):
        dataset_hvp(loss, p, batches, v, batch_sizes=np.ones(2))
    with pytest.raises(ValueError, match="batch_sizes must be finite and > 0"):
        dataset_hvp(loss, p, batches, v, batch_sizes=np.array([1.0, -1.0, 2.0]))
    with pytest.raises(ValueError, match="leaves all share a leading"):
        dataset_hvp(lambda q, b: loss(q, b[0]), p, (batches, jnp.ones((2, 4))), v)
    with pytest.raises(ValueError, match="batches must be a non-empty"):
        dataset_hvp(loss, p, (), v)
    with pytest.raises(ValueError, match="batch_sizes and mesh need batches"):
        hvp_operator(lambda q: jnp.sum(q), p, batch_sizes=np.ones(3))
    with pytest.raises(TypeError, match="linearize"):
        hvp_operator(lambda q: jnp.sum(q), p, linearize="yes")
    with pytest.raises(ValueError, match="memory_budget"):
        hvp_operator(lambda q: jnp.sum(q), p, memory_budget=-1)
    with pytest.raises(TypeError, match="mesh"):
        hvp_operator(loss, p, batches, mesh="data")


def test_zero_mass_argument_errors():
    q = SpectralQuadrature(np.zeros((1, 2)), np.full((1, 2), 0.5), 2)
    with pytest.raises(ValueError, match="num_rows"):
        hessian_row_zero_mass(OP, jnp.ones(5), num_rows=6)
    with pytest.raises(ValueError, match="tol"):
        hessian_row_zero_mass(OP, jnp.ones(5), num_rows=2, tol=0.0)
    with pytest.raises(ValueError, match=r"mass must be in \[0, 1\]"):
        add_zero_atom(q, 1.5)
    with pytest.raises(TypeError, match="quadrature must be a SpectralQuadrature"):
        slq_zero_mass((q.nodes, q.weights), tol=0.1)
    with pytest.raises(ValueError, match="tol"):
        slq_zero_mass(q, tol=-1.0)
    with pytest.raises(ValueError, match="alphas and betas"):
        tridiagonal_eigh(np.ones(3), np.ones(2))
