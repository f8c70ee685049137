"""Near-zero spectral mass (SPEC 1.3): the Hessian-row estimator and the SLQ weight near 0.

The reference code of the first paper counts Hessian rows ``H e_i`` (at ``num_rows`` magnitude
quantiles of the weights) whose l1 norm is below ``tol`` as zero directions, and adds that
mass to the SLQ density as an atom at 0 (:func:`add_zero_atom`); :func:`slq_zero_mass` is the
SLQ weight within ``|lambda| < tol`` to compare with.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from prune_jax.curvature.hoist import compiled, flat_operator, prepare
from prune_jax.curvature.layout import FlatLayout
from prune_jax.curvature.spectrum import Estimate, SpectralQuadrature, map_chunked
from prune_jax.curvature.tridiag import check_finite_result
from prune_jax.tree import Array, PyTree, constrain, ravel
from prune_jax.validate import check_fraction, check_int, check_key, check_positive, check_tree

__all__ = ["RowZeroMass", "add_zero_atom", "hessian_row_zero_mass", "slq_zero_mass"]


class RowZeroMass(NamedTuple):
    """Hessian-row estimate of the zero-eigenvalue mass (SPEC 1.3): the ``fraction`` of
    sampled rows with ``row_l1 = ||H e_i||_1 < tol``; ``indices`` (into ``ravel(params)``) and
    ``magnitudes`` ``|w_i|`` (ascending) of the ``num_rows`` sampled weights."""

    fraction: float
    row_l1: np.ndarray
    indices: np.ndarray
    magnitudes: np.ndarray
    tol: float


def _replicated(x: Array, mesh: Mesh | None) -> Array:
    return x if mesh is None else constrain(x, NamedSharding(mesh, P()))


@jax.jit(static_argnames=("num_rows", "stratified", "mesh"))
def _select_rows(params: PyTree, key: Array, *, num_rows: int, stratified: bool,
                 mesh: Mesh | None) -> tuple[Array, Array]:
    """Flat indices of the weights at ``num_rows`` global magnitude quantiles, and ``|w|``."""
    mags = jnp.abs(ravel(params)[0])
    dim = mags.shape[0]
    order = jnp.argsort(mags, stable=True)
    if stratified:  # one uniform pick inside each of num_rows equal-count magnitude bins
        edges = (jnp.arange(num_rows + 1) * dim) // num_rows
        u = jax.random.uniform(key, (num_rows,))
        pos = edges[:-1] + jnp.floor(u * (edges[1:] - edges[:-1])).astype(edges.dtype)
    else:  # the exact quantile positions 0, ..., 1
        pos = jnp.round(jnp.linspace(0.0, dim - 1.0, num_rows)).astype(jnp.int32)
    idx = order[pos]
    return _replicated(idx, mesh), _replicated(mags[idx], mesh)


@compiled
def hessian_rows(op: Any, indices: Array, *, layout: FlatLayout, amortise: bool,
                 batch_size: int, l1: bool) -> Array:
    """Rows ``H e_i`` (flat, padded; their l1 norms with ``l1``), vmapped in chunks."""
    flat, _, dtype = flat_operator(op, layout, amortise)

    def one(i: Array) -> Array:
        row = flat(layout.constrain(jnp.zeros(layout.padded, dtype).at[i].set(1)))
        return jnp.sum(jnp.abs(row)) if l1 else row

    return _replicated(map_chunked(one, indices, batch_size), layout.mesh)


def hessian_row_zero_mass(matvec: Callable[[PyTree], PyTree], params: PyTree, *,
                          num_rows: int = 100, tol: float = 1e-7, key: Array | None = None,
                          batch_size: int | None = None, mesh: Any = None,
                          linearize: bool | str = "auto") -> RowZeroMass:
    """Fraction of zero eigenvalues estimated from l1 norms of Hessian rows (SPEC 1.3).

    Rows ``H e_i`` (one HVP each, in chunks of ``batch_size``) at ``num_rows`` weights of
    ``params``, picked by ``|w|``: ``key=None``, the exact magnitude quantiles ``0, ..., 1``; a
    ``key``, one uniform draw in each of ``num_rows`` equal-count magnitude bins. Rows with
    ``||H e_i||_1 < tol`` count as zero directions. ``matvec``, ``linearize`` and ``mesh``: as
    in :func:`top_eigenvalues`.

    Example:
        >>> loss = lambda p: jnp.sum(p[2:] ** 2)                    # H = diag(0, 0, 2, 2)
        >>> params = jnp.array([1.0, 2.0, 3.0, 4.0])
        >>> zm = hessian_row_zero_mass(hvp_operator(loss, params), params, num_rows=4)
        >>> zm.fraction, zm.row_l1.tolist(), zm.indices.tolist()
        (0.5, [0.0, 0.0, 2.0, 2.0], [0, 1, 2, 3])
    """
    stratified = key is not None
    check_tree(params, "params")
    op, layout, amortise = prepare(matvec, params, mesh=mesh, linearize=linearize,
                                   like_name="params")
    key = check_key(key) if stratified else jax.random.key(0)
    num_rows = check_int(num_rows, "num_rows", low=1, high=layout.dim)
    tol = check_positive(tol, "tol")
    batch_size = num_rows if batch_size is None else check_int(batch_size, "batch_size", low=1)
    idx, mags = _select_rows(params, key, num_rows=num_rows, stratified=stratified,
                             mesh=layout.mesh)
    l1 = hessian_rows(op, idx, layout=layout, amortise=amortise, batch_size=batch_size,
                      l1=True)
    check_finite_result(l1, "matvec (Hessian rows)")
    l1 = np.asarray(l1, dtype=np.float64)
    return RowZeroMass(float(np.mean(l1 < tol)), l1, np.asarray(idx), np.asarray(mags), tol)


def _check_quadrature(quadrature: Any) -> None:
    if not isinstance(quadrature, SpectralQuadrature):
        raise TypeError("quadrature must be a SpectralQuadrature (from slq), "
                        f"got {type(quadrature).__name__}")


def slq_zero_mass(quadrature: SpectralQuadrature, *, tol: float) -> Estimate:
    """SLQ weight within ``|lambda| < tol``, the quadrature of ``(1/D) #{i: |lambda_i| < tol}``
    with its standard error across probes (SPEC 1.3).

    Example:
        >>> op = lambda v: jnp.array([0.0, 0.0, 1.0, 2.0]) * v      # half the mass at 0
        >>> q = slq(op, jnp.zeros(4), key=jax.random.key(0), num_probes=8, num_steps=3)
        >>> est = slq_zero_mass(q, tol=1e-3)
        >>> round(est.estimate, 4), round(est.stderr, 4)
        (0.5, 0.0)
    """
    _check_quadrature(quadrature)
    tol = check_positive(tol, "tol")
    return quadrature.estimate(lambda x: (np.abs(x) < tol).astype(np.float64))


def add_zero_atom(quadrature: SpectralQuadrature, mass: float) -> SpectralQuadrature:
    """The reference code's correction: put ``mass`` at ``lambda = 0``, rescale the rest (SPEC 1.3).

    Each probe gets one more node at 0 with weight ``mass`` (in ``[0, 1]``, e.g.
    ``hessian_row_zero_mass(...).fraction``); its other weights are scaled by ``1 - mass``.

    Example:
        >>> q = SpectralQuadrature(np.array([[1.0, 3.0]]), np.array([[0.5, 0.5]]), dim=4)
        >>> q0 = add_zero_atom(q, 0.25)
        >>> q0.nodes.tolist(), q0.weights.tolist()
        ([[1.0, 3.0, 0.0]], [[0.375, 0.375, 0.25]])
    """
    _check_quadrature(quadrature)
    mass = check_fraction(mass, "mass", closed=True)
    n = quadrature.num_probes
    nodes = np.concatenate([quadrature.nodes, np.zeros((n, 1))], axis=1)
    weights = np.concatenate([quadrature.weights * (1.0 - mass), np.full((n, 1), mass)], axis=1)
    return SpectralQuadrature(nodes, weights, quadrature.dim)
