"""The exact Hessian of a small model from ``D`` Hessian-vector products (an oracle for SLQ).

``H = [H e_1, ..., H e_D]`` in vmapped chunks inside one compiled program: ``D`` products and
``D^2`` floats, for ``D`` up to about 2e4.
"""

from __future__ import annotations

from collections.abc import Callable

import jax.numpy as jnp
import numpy as np

from prune_jax.curvature.hoist import prepare
from prune_jax.curvature.layout import FlatLayout
from prune_jax.curvature.zero_mass import hessian_rows
from prune_jax.tree import PyTree
from prune_jax.validate import check_int, check_tree

__all__ = ["dense_hessian", "exact_eigenvalues"]


def _raw_columns(matvec: Callable[[PyTree], PyTree], like: PyTree, chunk: int) -> np.ndarray:
    """``[H e_1, ..., H e_D]`` as rows of a host float64 array (not symmetrised)."""
    check_tree(like, "like")
    chunk = check_int(chunk, "chunk", low=1)
    op, layout, amortise = prepare(matvec, like, mesh=None, linearize=False)
    rows = hessian_rows(op, jnp.arange(layout.dim), layout=FlatLayout.of(layout.dim),
                        amortise=amortise, batch_size=chunk, l1=False)
    return np.asarray(rows, np.float64)


def dense_hessian(matvec: Callable[[PyTree], PyTree], like: PyTree, *,
                  chunk: int = 128) -> np.ndarray:
    """The ``(D, D)`` matrix of the linear operator ``matvec`` on pytrees shaped like ``like``.

    Column ``j`` is ``ravel(matvec(unravel(e_j)))``, ``chunk`` columns at once; symmetrised,
    ``(H + H^T) / 2``, as a host float64 array.

    Example:
        >>> op = lambda v: {"a": 2.0 * v["a"] + v["b"], "b": v["a"]}
        >>> dense_hessian(op, {"a": jnp.zeros(()), "b": jnp.zeros(())})
        array([[2., 1.],
               [1., 0.]])
    """
    cols = _raw_columns(matvec, like, chunk)
    return 0.5 * (cols + cols.T)


def exact_eigenvalues(matvec: Callable[[PyTree], PyTree], like: PyTree, *,
                      chunk: int = 128) -> np.ndarray:
    """All ``D`` eigenvalues (ascending, float64) of the symmetric operator ``matvec``.

    ``eigvalsh`` of the columns of :func:`dense_hessian`: the exact density that
    :func:`prune_jax.curvature.slq` estimates, accepted wherever a spectrum is.

    Example:
        >>> op = lambda v: jnp.array([3.0, 1.0]) * v
        >>> exact_eigenvalues(op, jnp.zeros(2))
        array([1., 3.])
    """
    return np.linalg.eigvalsh(_raw_columns(matvec, like, chunk))
