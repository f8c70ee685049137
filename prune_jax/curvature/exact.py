"""The exact Hessian of a small model, built from Hessian-vector products (an oracle for SLQ).

``H = [H e_1, ..., H e_D]``: the operator is applied to the unit vectors in vmapped chunks
inside one compiled ``lax.map``, then symmetrised, and ``eigh`` gives every eigenvalue. It
costs ``D`` products and ``D^2`` floats, so it is meant for ``D`` up to about 2e4 (1.6 GB in
float32 at 2e4), where it is the reference that stochastic Lanczos quadrature approximates.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from prune_jax.curvature.hoist import prepare
from prune_jax.curvature.layout import FlatLayout
from prune_jax.curvature.spectrum import Spec, compiled, flat_operator, spec_of
from prune_jax.tree import PyTree
from prune_jax.validate import check_int, check_tree

__all__ = ["dense_hessian", "exact_eigenvalues"]


@compiled
def _columns(op: Any, *, spec: Spec, layout: FlatLayout, amortise: bool, chunk: int) -> jax.Array:
    flat, _, dtype = flat_operator(op, spec, layout, amortise)
    column = lambda i: flat(jnp.zeros(layout.dim, dtype).at[i].set(1))
    return jax.lax.map(column, jnp.arange(layout.dim), batch_size=chunk)


def dense_hessian(matvec: Callable[[PyTree], PyTree], like: PyTree, *,
                  chunk: int = 128) -> np.ndarray:
    """The ``(D, D)`` matrix of the linear operator ``matvec`` on pytrees shaped like ``like``.

    Column ``j`` is ``ravel(matvec(unravel(e_j)))``, in :func:`prune_jax.tree.ravel` order;
    ``chunk`` columns are computed at once (vmapped). The result is symmetrised,
    ``(H + H^T) / 2``, and returned as a host float64 array.

    ``matvec``: any function (its arrays are hoisted into arguments of the compiled program,
    see :func:`prune_jax.curvature.lanczos`), e.g. from
    :func:`prune_jax.curvature.hvp_operator`.

    Example:
        >>> op = lambda v: {"a": 2.0 * v["a"] + v["b"], "b": v["a"]}
        >>> dense_hessian(op, {"a": jnp.zeros(()), "b": jnp.zeros(())})
        array([[2., 1.],
               [1., 0.]])
    """
    cols = _raw_columns(matvec, like, chunk)
    return 0.5 * (cols + cols.T)


def _raw_columns(matvec: Callable[[PyTree], PyTree], like: PyTree, chunk: int) -> np.ndarray:
    """``[H e_1, ..., H e_D]`` as rows of a host float64 array (not symmetrised)."""
    check_tree(like, "like")
    chunk = check_int(chunk, "chunk", low=1)
    op, layout, amortise = prepare(matvec, like, mesh=None, linearize=False)
    return np.asarray(_columns(op, spec=spec_of(like), layout=FlatLayout.of(layout.dim),
                               amortise=amortise, chunk=min(chunk, layout.dim)), np.float64)


def exact_eigenvalues(matvec: Callable[[PyTree], PyTree], like: PyTree, *,
                      chunk: int = 128) -> np.ndarray:
    """All ``D`` eigenvalues (ascending, float64) of the symmetric operator ``matvec``.

    The columns of :func:`dense_hessian` followed by ``numpy.linalg.eigvalsh``, which reads
    one triangle (so no symmetrised copy is made: memory ``D^2`` float64 plus LAPACK's
    workspace, about 9 GB at ``D = 2.4e4``). The uniform measure on these
    is the exact spectral density that :func:`prune_jax.curvature.slq` estimates, and they can
    be passed wherever a spectrum is accepted (e.g. :func:`prune_jax.predict_sparsity_limit`).

    Example:
        >>> op = lambda v: jnp.array([3.0, 1.0]) * v
        >>> exact_eigenvalues(op, jnp.zeros(2))
        array([1., 3.])
    """
    return np.linalg.eigvalsh(_raw_columns(matvec, like, chunk))

