"""Hessian-vector products (SPEC 1.1), for one loss or a whole data set of batches.

``H v = d/dt grad L(w + t v)|_{t=0}``, computed forward-over-reverse
(``jax.jvp(jax.grad(L), (w,), (v,))[1]``); ``H`` is never materialised. Over a data set of
batches ``b`` with sizes ``n_b``: ``H v = (sum_b n_b H_b v) / (sum_b n_b)``, one ``lax.scan``.

Operators are :class:`jax.tree_util.Partial` objects whose *leaves* are the bound parameters,
batches and weights. Pass them as arguments to :func:`~prune_jax.curvature.lanczos` and friends:
the arrays are then traced jit arguments (never folded into the program as constants), and a
second operator with the same shapes but new values reuses the compiled program.

Models with state (BatchNorm statistics, dropout) are evaluated in whatever mode ``loss_fn``
closes over; the toolkit's default, and the recommended choice for curvature, is inference mode
(running statistics, no dropout), e.g. ``model.apply({"params": p, "batch_stats": s}, x,
train=False)``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.tree_util import Partial

from prune_jax.curvature._checks import check_tree, is_concrete
from prune_jax.tree import (
    Array,
    PyTree,
    check_floating,
    check_same_structure,
    leaf_names,
    on_auto_mesh,
)

__all__ = ["dataset_hvp", "hvp", "hvp_operator"]

LossFn = Callable[..., Array]


# --------------------------------------------------------------------------- compiled cores

def _hvp_core(loss_fn: LossFn, params: PyTree, v: PyTree) -> PyTree:
    return jax.jvp(jax.grad(loss_fn), (params,), (v,))[1]


def _batch_hvp(loss_fn: LossFn, params: PyTree, batch: PyTree, v: PyTree) -> PyTree:
    return jax.jvp(lambda p: jax.grad(loss_fn)(p, batch), (params,), (v,))[1]


def _num_leading(batches: PyTree) -> int:
    """Static size of the leading (batch-index) axis of ``batches``."""
    return int(jax.tree.leaves(batches)[0].shape[0])


def _dataset_hvp_core(loss_fn: LossFn, params: PyTree, batches: PyTree, weights: Array,
                      v: PyTree) -> PyTree:
    """``sum_b weights_b H_b v`` in one ``lax.scan`` over the leading axis of ``batches``.

    A single batch skips the scan: XLA:CPU compiles weight-gradient convolutions inside a
    ``scan`` body tens of times slower than outside one (measured in benchmarks/RESULTS.md).
    """
    if _num_leading(batches) == 1:
        hv = _batch_hvp(loss_fn, params, jax.tree.map(lambda x: x[0], batches), v)
        return jax.tree.map(lambda h: weights[0].astype(h.dtype) * h, hv)

    def body(acc: PyTree, xs: tuple[PyTree, Array]) -> tuple[PyTree, None]:
        batch, w = xs
        hv = _batch_hvp(loss_fn, params, batch, v)
        return jax.tree.map(lambda a, h: a + w.astype(a.dtype) * h, acc, hv), None

    acc0 = jax.tree.map(jnp.zeros_like, v)
    return jax.lax.scan(body, acc0, (batches, weights))[0]


def _dataset_grad(loss_fn: LossFn, params: PyTree, batches: PyTree, weights: Array) -> PyTree:
    """``sum_b weights_b grad L_b(params)`` in one ``lax.scan`` (the data-set gradient).

    A single batch skips the scan, as in :func:`_dataset_hvp_core` (so its linearisation,
    the amortised operator, has no loop either).
    """
    if _num_leading(batches) == 1:
        g = jax.grad(loss_fn)(params, jax.tree.map(lambda x: x[0], batches))
        return jax.tree.map(lambda x: weights[0].astype(x.dtype) * x, g)

    def body(acc: PyTree, xs: tuple[PyTree, Array]) -> tuple[PyTree, None]:
        batch, w = xs
        g = jax.grad(loss_fn)(params, batch)
        return jax.tree.map(lambda a, x: a + w.astype(a.dtype) * x, acc, g), None

    acc0 = jax.tree.map(jnp.zeros_like, params)
    return jax.lax.scan(body, acc0, (batches, weights))[0]


_hvp_jit = jax.jit(_hvp_core, static_argnums=0)
_dataset_hvp_jit = jax.jit(_dataset_hvp_core, static_argnums=0)


def _all_finite(tree: PyTree) -> Array:
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)]))


@jax.jit(static_argnums=0)
def _hvp_checked(loss_fn: LossFn, params: PyTree, v: PyTree) -> tuple[PyTree, Array]:
    """``H v`` and one all-finite flag over ``params``, ``v`` and ``H v``, in one program.

    The flag's reductions fuse into the product's program, so :func:`hvp` validates values
    with a single device-to-host transfer of one bool instead of separate programs and syncs
    before the product.
    """
    hv = _hvp_core(loss_fn, params, v)
    return hv, _all_finite((params, v, hv))


@jax.jit(static_argnums=0)
def _linearize_single(loss_fn: LossFn, params: PyTree) -> Partial:
    return jax.linearize(jax.grad(loss_fn), params)[1]


@jax.jit(static_argnums=0)
def _linearize_dataset(loss_fn: LossFn, params: PyTree, batches: PyTree,
                       weights: Array) -> Partial:
    return jax.linearize(lambda p: _dataset_grad(loss_fn, p, batches, weights), params)[1]


@jax.jit
def _apply_linear(f_jvp: Partial, v: PyTree) -> PyTree:
    return f_jvp(v)


@dataclasses.dataclass(frozen=True)
class _SingleHVP:
    """Static part of a one-loss operator; equal (same compiled program) for the same loss_fn."""

    loss_fn: LossFn

    def __call__(self, params: PyTree, v: PyTree) -> PyTree:
        return _hvp_jit(self.loss_fn, params, v)


@dataclasses.dataclass(frozen=True)
class _DatasetHVP:
    """Static part of a data-set operator; equal for the same loss_fn."""

    loss_fn: LossFn

    def __call__(self, params: PyTree, batches: PyTree, weights: Array, v: PyTree) -> PyTree:
        return _dataset_hvp_jit(self.loss_fn, params, batches, weights, v)


# --------------------------------------------------------------------------- validation

def _same_layout(params: PyTree, v: PyTree) -> bool:
    """Fast path: same tree structure and leaf shapes/dtypes (array leaves only)."""
    pl, pt = jax.tree.flatten(params)
    vl, vt = jax.tree.flatten(v)
    return pt == vt and all(
        isinstance(a, jax.Array) and isinstance(b, jax.Array) and a.shape == b.shape
        and a.dtype == b.dtype and jnp.issubdtype(a.dtype, jnp.floating)
        for a, b in zip(pl, vl, strict=True))


def _check_v_layout(params: PyTree, v: PyTree) -> None:
    """Structure, shapes and dtypes of ``v`` against ``params`` (no values inspected)."""
    if _same_layout(params, v):
        return
    check_same_structure(params, v, "params", "v")
    for n, p, x in zip(leaf_names(params), jax.tree.leaves(params), jax.tree.leaves(v),
                       strict=True):
        if jnp.result_type(p) != jnp.result_type(x):
            raise TypeError(f"v leaf {n!r} has dtype {jnp.result_type(x)}, but params has "
                            f"{jnp.result_type(p)} (tangents must match the primal dtype)")


def _check_v(params: PyTree, v: PyTree) -> None:
    _check_v_layout(params, v)
    check_tree(v, "v")


def _num_batches(batches: PyTree) -> int:
    leaves = jax.tree.leaves(batches)
    if not leaves:
        raise ValueError("batches must be a non-empty pytree of arrays with a leading "
                         "batch-index axis (num_batches, ...)")
    sizes = {int(np.shape(x)[0]) if np.ndim(x) else -1 for x in leaves}
    if -1 in sizes or len(sizes) != 1:
        raise ValueError("batches leaves must all share a leading batch-index axis "
                         f"(num_batches, ...); got leading sizes {sorted(sizes)}")
    (nb,) = sizes
    if nb < 1:
        raise ValueError("batches must hold at least one batch (leading axis >= 1)")
    return nb


def _batch_weights(batches: PyTree, batch_sizes: Any, dtype: Any) -> Array:
    """Normalised weights ``n_b / sum n_b`` (equal when ``batch_sizes`` is None)."""
    nb = _num_batches(batches)
    if batch_sizes is None:
        return jnp.full((nb,), 1.0 / nb, dtype)
    sizes = jnp.asarray(batch_sizes)
    if sizes.shape != (nb,):
        raise ValueError(f"batch_sizes must have shape (num_batches,) = ({nb},), "
                         f"got {sizes.shape}")
    if is_concrete(sizes):
        s = np.asarray(sizes, dtype=np.float64)
        if not np.all(np.isfinite(s)) or np.any(s <= 0):
            raise ValueError("batch_sizes must be finite and > 0 (number of examples n_b)")
    sizes = sizes.astype(dtype)
    return sizes / jnp.sum(sizes)


# --------------------------------------------------------------------------- public API

def hvp(loss_fn: LossFn, params: PyTree, v: PyTree) -> PyTree:
    """Hessian-vector product ``H v`` of ``loss_fn(params) -> scalar`` (SPEC 1.1).

    Forward-over-reverse, ``jax.jvp(jax.grad(loss_fn), (params,), (v,))[1]``, for any pytree;
    ``v`` has the structure, shapes and dtypes of ``params``. The product is compiled once per
    ``loss_fn`` object (``params`` and ``v`` are jit arguments), so reuse the same ``loss_fn``.
    NaN/Inf in ``params``, ``v`` or the product raise ``ValueError`` (one flag computed in the
    product's own program; skipped under the caller's ``jit``/``vmap``).
    For a model with state, ``loss_fn`` fixes the mode (the toolkit's default: inference).

    Example:
        >>> loss = lambda p: jnp.sum(p["w"] ** 3)
        >>> hvp(loss, {"w": jnp.array([1.0, 2.0])}, {"w": jnp.array([1.0, 0.0])})
        {'w': Array([6., 0.], dtype=float32)}
    """
    if not callable(loss_fn):
        raise TypeError(f"loss_fn must be callable, got {type(loss_fn).__name__}")
    if not jax.tree.leaves(params):
        raise ValueError("params must be a non-empty pytree of arrays")
    if not _same_layout(params, v):  # the detailed checks, naming the offending leaf
        check_floating(params, "params")
        _check_v_layout(params, v)
    if not is_concrete((params, v)):  # under the caller's jit/vmap: no value checks
        return _hvp_jit(loss_fn, params, v)
    hv, ok = _hvp_checked(loss_fn, params, v)
    if not bool(ok):
        check_tree(params, "params")  # these raise, naming the offending leaf
        check_tree(v, "v")
        raise ValueError("the HVP produced NaN or Inf for finite params and v; check loss_fn "
                         "(e.g. log of 0, overflow)")
    return hv


def hvp_operator(loss_fn: LossFn, params: PyTree, batches: PyTree | None = None, *,
                 batch_sizes: Any = None, linearize: bool = False) -> Partial:
    """The operator ``v -> H v`` at ``params`` as a :class:`~jax.tree_util.Partial` (SPEC 1.1).

    - ``batches is None``: ``loss_fn(params) -> scalar``.
    - otherwise ``loss_fn(params, batch) -> scalar`` (the mean loss of one batch) and
      ``batches`` is a pytree whose leaves have a leading batch-index axis
      ``(num_batches, ...)``; the operator is the exact full-data-set HVP
      ``(sum_b n_b H_b v) / (sum_b n_b)``, one ``lax.scan`` over the batches. ``batch_sizes``
      gives ``n_b`` (shape ``(num_batches,)``; default: equal sizes). For one batch, give it
      a leading axis of 1 (``jax.tree.map(lambda x: x[None], batch)``); do not close over it.

    ``linearize=False`` (default): every product recomputes the forward and backward pass of
    each batch (memory: one batch's activations). ``linearize=True`` (the amortised form):
    the gradient is linearised once, here, with ``jax.linearize``, and each product runs only
    the tangent pass. With many batches the linearisation is of the whole scan, so the stored
    residuals are those of *every* batch (roughly the forward activations of the whole data
    set, held on the device for the operator's lifetime); use it when they fit.

    The returned ``Partial``'s leaves are ``params``, ``batches`` and the weights (or the
    linearisation residuals), so passing it to a jitted function makes them traced arguments
    and reuses the compiled program for new values of the same shapes. BatchNorm/dropout
    models: ``loss_fn`` fixes the mode; the toolkit's default is inference mode.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from prune_jax.curvature import top_eigenvalues
        >>> loss = lambda p, b: jnp.mean((b @ p) ** 2)      # here H = 2 * ones((3, 3))
        >>> op = hvp_operator(loss, jnp.ones(3), jnp.ones((4, 8, 3)))  # 4 batches of 8
        >>> op(jnp.array([1.0, 0.0, 0.0]))
        Array([2., 2., 2.], dtype=float32)
        >>> top = top_eigenvalues(op, jnp.ones(3), key=jax.random.key(0), k=1, num_steps=3)
        >>> round(float(top.eigenvalues[0]), 4)             # the eigenvalue 2 * 3
        6.0
    """
    if not callable(loss_fn):
        raise TypeError(f"loss_fn must be callable, got {type(loss_fn).__name__}")
    if not isinstance(linearize, bool):
        raise TypeError(f"linearize must be a bool, got {type(linearize).__name__}")
    check_tree(params, "params")
    if batches is None:
        if batch_sizes is not None:
            raise ValueError("batch_sizes was given without batches")
        if linearize:
            return Partial(_apply_linear, _linearize_single(loss_fn, params))
        return Partial(_SingleHVP(loss_fn), params)
    dtype = jnp.result_type(*jax.tree.leaves(params))
    weights = _batch_weights(batches, batch_sizes, dtype)
    if linearize:
        return Partial(_apply_linear, _linearize_dataset(loss_fn, params, batches, weights))
    return Partial(_DatasetHVP(loss_fn), params, batches, weights)


@on_auto_mesh
def dataset_hvp(loss_fn: LossFn, params: PyTree, batches: PyTree, v: PyTree, *,
                batch_sizes: Any = None) -> PyTree:
    """Exact full-data-set HVP ``(sum_b n_b H_b v) / (sum_b n_b)`` (SPEC 1.1).

    ``loss_fn(params, batch)`` is the mean loss of one batch; ``batches`` has leaves with a
    leading batch-index axis ``(num_batches, ...)``; ``batch_sizes`` gives ``n_b`` (default:
    equal). One ``lax.scan`` over the batches, compiled once per ``loss_fn`` object, with
    ``params``, ``batches`` and ``v`` as jit arguments. Equals the HVP of the size-weighted
    mean loss over the concatenated data.

    Example:
        >>> loss = lambda p, b: jnp.mean((b @ p) ** 2)
        >>> dataset_hvp(loss, jnp.ones(2), jnp.ones((3, 5, 2)), jnp.array([1.0, 0.0]))
        Array([2., 2.], dtype=float32)
    """
    op = hvp_operator(loss_fn, params, batches, batch_sizes=batch_sizes)
    _check_v(params, v)
    return op(v)
