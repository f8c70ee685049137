"""Hessian-vector products (SPEC 1.1): one product, and THE operator over data and devices.

``H v = d/dt grad L(w + t v)|_{t=0}``, forward-over-reverse; ``H`` is never materialised.
Over batches ``b`` of sizes ``n_b``: ``H v = (sum_b n_b H_b v) / (sum_b n_b)`` (on a mesh, one
``psum`` of the per-device sums). Models with state (BatchNorm, dropout) are evaluated in the
mode ``loss_fn`` closes over; inference mode is the recommended choice for curvature.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P
from jax.tree_util import Partial

from prune_jax.curvature.hoist import as_operator
from prune_jax.sharding import DATA_AXIS, check_axis, replicate, shard_batches
from prune_jax.tree import Array, PyTree, check_finite, check_same_structure, leaf_names
from prune_jax.validate import (
    check_bool,
    check_int,
    check_no_explicit_mesh,
    check_tree,
    is_concrete,
)

__all__ = ["dataset_hvp", "hvp", "hvp_operator"]

LossFn = Callable[..., Array]


def _hvp(loss_fn: LossFn, params: PyTree, v: PyTree) -> PyTree:
    return jax.jvp(jax.grad(loss_fn), (params,), (v,))[1]


def _mean_hvp(loss_fn: LossFn, params: PyTree, batches: PyTree, sizes: Array, v: PyTree,
              axis: str | None = None) -> PyTree:
    """``(sum_b n_b H_b v) / (sum_b n_b)``: one ``lax.scan`` over the leading axis of
    ``batches``, the sums ``psum``-ed over the mesh ``axis`` when given."""
    def one(batch: PyTree, size: Array) -> PyTree:
        hv = _hvp(lambda p: loss_fn(p, batch), params, v)
        return jax.tree.map(lambda h: size.astype(h.dtype) * h, hv)

    if jax.tree.leaves(batches)[0].shape[0] == 1:
        # one batch: no scan (XLA:CPU compiles weight-gradient convolutions in a scan body
        # tens of times slower, benchmarks/RESULTS.md)
        hv = one(jax.tree.map(lambda x: x[0], batches), sizes[0])
    else:
        def body(acc: PyTree, xs: tuple[PyTree, Array]) -> tuple[PyTree, None]:
            return jax.tree.map(jnp.add, acc, one(*xs)), None

        hv = jax.lax.scan(body, jax.tree.map(jnp.zeros_like, v), (batches, sizes))[0]
    total = jnp.sum(sizes)
    if axis is not None:
        hv, total = jax.lax.psum((hv, total), axis)
    return jax.tree.map(lambda h: h / total.astype(h.dtype), hv)


@jax.jit(static_argnums=0)
def _hvp_checked(loss_fn: LossFn, params: PyTree, v: PyTree) -> tuple[PyTree, Array]:
    """``H v`` and one all-finite flag over ``params``, ``v`` and ``H v``, in one program."""
    hv = _hvp(loss_fn, params, v)
    flags = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves((params, v, hv))]
    return hv, jnp.all(jnp.stack(flags))


def _check_v(params: PyTree, v: PyTree) -> None:
    """Structure, shapes and dtypes of ``v`` against ``params`` (no values read)."""
    check_same_structure(params, v, "params", "v")
    for n, p, x in zip(leaf_names(params), jax.tree.leaves(params), jax.tree.leaves(v),
                       strict=True):
        if jnp.result_type(p) != jnp.result_type(x):
            raise TypeError(f"v leaf {n!r} has dtype {jnp.result_type(x)}, but params has "
                            f"{jnp.result_type(p)} (tangents must match the primal dtype)")


def hvp(loss_fn: LossFn, params: PyTree, v: PyTree) -> PyTree:
    """Hessian-vector product ``H v`` of ``loss_fn(params) -> scalar`` (SPEC 1.1).

    ``v`` has the structure, shapes and dtypes of ``params``. On arrays the product is compiled
    once per ``loss_fn`` object, and NaN/Inf in ``params``, ``v`` or the product raise
    ``ValueError``; under a trace (``jit``, ``vmap``, a matvec such as ``lambda v: hvp(loss,
    params, v)`` given to :func:`lanczos`) it is inlined, so the arrays ``loss_fn`` closes over
    are hoisted.

    Example:
        >>> loss = lambda p: jnp.sum(p["w"] ** 3)
        >>> hvp(loss, {"w": jnp.array([1.0, 2.0])}, {"w": jnp.array([1.0, 0.0])})
        {'w': Array([6., 0.], dtype=float32)}
    """
    if not callable(loss_fn):
        raise TypeError(f"loss_fn must be callable, got {type(loss_fn).__name__}")
    check_tree(params, "params")
    check_no_explicit_mesh((params, v), "params and v")
    _check_v(params, v)
    if not is_concrete((params, v)):
        return _hvp(loss_fn, params, v)
    hv, ok = _hvp_checked(loss_fn, params, v)
    if not bool(ok):
        check_finite(params, "params")  # these raise, naming the offending leaf
        check_finite(v, "v")
        raise ValueError("the HVP produced NaN or Inf for finite params and v; check loss_fn "
                         "(e.g. log of 0, overflow)")
    return hv


def _sizes(batches: PyTree, batch_sizes: Any, dtype: Any) -> Array:
    """``n_b`` as an array of shape ``(num_batches,)`` (ones by default), validated."""
    leaves = jax.tree.leaves(batches)
    lead = {int(np.shape(x)[0]) if np.ndim(x) else -1 for x in leaves}
    if not leaves or -1 in lead or len(lead) != 1 or min(lead) < 1:
        raise ValueError("batches must be a non-empty pytree whose leaves all share a leading "
                         f"batch-index axis (num_batches >= 1, ...); got {sorted(lead)}")
    (num,) = lead
    if batch_sizes is None:
        return jnp.ones((num,), dtype)
    if np.shape(batch_sizes) != (num,):
        raise ValueError(f"batch_sizes must have shape (num_batches,) = ({num},), got "
                         f"{np.shape(batch_sizes)}")
    if not isinstance(batch_sizes, jax.Array):  # host values: checked without a device sync
        host = np.asarray(batch_sizes, np.float64)
        if not np.all(np.isfinite(host)) or np.any(host <= 0):
            raise ValueError("batch_sizes must be finite and > 0 (number of examples n_b)")
    return jnp.asarray(batch_sizes, dtype)


def _on_mesh(params: PyTree, mesh: Mesh) -> PyTree:
    """``params`` with every leaf not yet on ``mesh`` replicated on it."""
    on = lambda x: isinstance(getattr(x, "sharding", None), NamedSharding) and \
        x.sharding.mesh == mesh
    return jax.tree.map(lambda x: x if on(x) else replicate(x, mesh), params)


def hvp_operator(loss_fn: LossFn, params: PyTree, batches: PyTree | None = None, *,
                 batch_sizes: Any = None, mesh: Mesh | None = None,
                 data_axis: str = DATA_AXIS, process_local: bool = False,
                 linearize: bool | str = "auto", memory_budget: int | None = None) -> Partial:
    """The operator ``v -> H v`` at ``params`` as a :class:`~jax.tree_util.Partial` (SPEC 1.1).

    - ``batches is None``: ``loss_fn(params) -> scalar``.
    - otherwise ``loss_fn(params, batch) -> scalar`` is the mean loss of one batch and
      ``batches`` a pytree whose leaves have a leading batch-index axis ``(num_batches, ...)``;
      the operator is the exact full-data-set HVP ``(sum_b n_b H_b v) / (sum_b n_b)``.
      ``batch_sizes`` gives ``n_b`` (shape ``(num_batches,)``; default equal).
    - ``mesh`` (with ``batches``): data parallel. The batches are split over the mesh axis
      ``data_axis`` (:func:`prune_jax.sharding.shard_batches`; ``process_local=True``: each
      process passes only its own batches) and one ``psum`` adds the partial sums. ``params``
      may be replicated or sharded over the other axes; leaves not on ``mesh`` are replicated
      on it (``docs/scaling.md``).

    ``linearize``: ``True`` runs the forward and backward passes once, here, and each product
    only the tangent pass on the stored residuals (about the activations of every batch);
    ``False`` recomputes them per product; ``"auto"`` linearises when the residuals fit in
    ``memory_budget`` bytes per device (default: a quarter of the device memory, an eighth of
    the host RAM on CPU). The result's leaves are traced arguments of the routines it is
    passed to: new values of the same shapes reuse their compiled programs.

    Example:
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
    if not (isinstance(linearize, bool) or linearize == "auto"):
        raise TypeError(f"linearize must be True, False or 'auto', got {linearize!r}")
    if memory_budget is not None:
        memory_budget = check_int(memory_budget, "memory_budget", low=0)
    check_tree(params, "params")
    check_no_explicit_mesh((params, batches), "params and batches")
    process_local = check_bool(process_local, "process_local")
    devices = 1
    if batches is None:
        if batch_sizes is not None or mesh is not None:
            raise ValueError("batch_sizes and mesh need batches (loss_fn(params, batch))")
        matvec = lambda v: _hvp(loss_fn, params, v)
    elif mesh is None:
        sizes = _sizes(batches, batch_sizes, jnp.result_type(*jax.tree.leaves(params)))
        matvec = lambda v: _mean_hvp(loss_fn, params, batches, sizes, v)
    else:
        if not isinstance(mesh, Mesh):
            raise TypeError(f"mesh must be a jax.sharding.Mesh (e.g. prune_jax.sharding."
                            f"make_mesh()) or None, got {type(mesh).__name__}")
        check_axis(mesh, data_axis, "data_axis")
        placed = shard_batches(batches, mesh, data_axis, batch_sizes=batch_sizes,
                               dtype=jnp.result_type(*jax.tree.leaves(params)),
                               process_local=process_local)
        params = _on_mesh(params, mesh)
        local = functools.partial(_mean_hvp, loss_fn, axis=data_axis)
        # check_vma=False on purpose: with varying-manual-axes checks, autodiff would already
        # sum the gradient w.r.t. the replicated params across data_axis (the transpose of the
        # implicit pvary is a psum), and the explicit psum of SPEC 1.1 would count it twice.
        sharded = jax.shard_map(local, mesh=mesh,
                                in_specs=(P(), P(data_axis), P(data_axis), P()),
                                out_specs=P(), axis_names={data_axis}, check_vma=False)
        matvec = lambda v: sharded(params, placed.batches, placed.sizes, v)
        devices = mesh.shape[data_axis]
    return as_operator(matvec, params, linearize=linearize, memory_budget=memory_budget,
                       devices=devices, like_name="params")


def dataset_hvp(loss_fn: LossFn, params: PyTree, batches: PyTree, v: PyTree, *,
                batch_sizes: Any = None) -> PyTree:
    """One exact full-data-set HVP ``(sum_b n_b H_b v) / (sum_b n_b)`` (SPEC 1.1): the HVP of
    the size-weighted mean loss over the concatenated data. For many products build
    :func:`hvp_operator` once.

    Example:
        >>> loss = lambda p, b: jnp.mean((b @ p) ** 2)
        >>> dataset_hvp(loss, jnp.ones(2), jnp.ones((3, 5, 2)), jnp.array([1.0, 0.0]))
        Array([2., 2.], dtype=float32)
    """
    check_tree(params, "params")
    _check_v(params, v)
    return hvp_operator(loss_fn, params, batches, batch_sizes=batch_sizes,
                        linearize=False)(v)
