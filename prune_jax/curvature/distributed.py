"""Data-parallel, optionally parameter-sharded, full-data-set HVPs on a device mesh (SPEC 1.1).

The exact full-data-set HVP ``H v = (sum_b n_b H_b v) / (sum_b n_b)`` splits over devices
without approximation: the batches are split over the mesh axis ``data_axis`` (whole batches
per device), each device computes its local size-weighted sum ``sum_{b local} n_b H_b v`` with
the same ``lax.scan`` as the one-device operator (:func:`~prune_jax.curvature.hvp_operator`),
and one ``jax.lax.psum`` over ``data_axis`` adds the partial sums and the example counts; the
sum is divided by the global count. This is a :func:`jax.shard_map` that is manual over
``data_axis`` only: the other mesh axes stay automatic, so parameters (and ``v``) sharded over
them (FSDP style, :func:`prune_jax.sharding.shard_params`) keep their ``NamedSharding`` and
XLA partitions the per-batch forward/backward passes over them. Parameters sharded over
``data_axis`` itself are gathered on entry (whole-model FSDP gather).

With ``linearize=True`` the same sharded data-set *gradient* (the ``shard_map`` with its
``psum``) is linearised once with :func:`jax.linearize`; each product then runs only the
tangent pass, from residuals that stay where they were computed (each device holds those of
its own batches, split over ``data_axis``).

The operator is a :class:`jax.tree_util.Partial` like the one-device operators: its leaves are
the (sharded) parameters, batches and sizes (or the linearisation residuals), so
:func:`~prune_jax.curvature.lanczos`, :func:`~prune_jax.curvature.slq`,
:func:`~prune_jax.curvature.hutchinson_trace` and :func:`~prune_jax.curvature.top_eigenvalues`
take it unchanged; they read its mesh and split the flat Lanczos vectors and basis over every
device of it (see ``_layout``).

Multi-host: one process per host after :func:`jax.distributed.initialize`; the mesh spans the
devices of every process and the same code runs in every process (``docs/scaling.md``).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
from jax.sharding import Mesh
from jax.sharding import PartitionSpec as P
from jax.tree_util import Partial

from prune_jax.curvature._checks import check_tree
from prune_jax.curvature.hvp import (
    LossFn,
    _apply_linear,
    _check_v,
    _dataset_grad,
    _dataset_hvp_core,
)
from prune_jax.sharding import DATA_AXIS, check_axis, shard_batches
from prune_jax.tree import Array, PyTree

__all__ = ["sharded_dataset_hvp", "sharded_hvp_operator"]


@functools.partial(jax.jit, static_argnums=(0, 1, 2))
def _sharded_hvp_jit(loss_fn: LossFn, mesh: Mesh, data_axis: str, params: PyTree,
                     batches: PyTree, sizes: Array, v: PyTree) -> PyTree:
    """``psum_data(sum_{b local} n_b H_b v) / psum_data(sum_{b local} n_b)``."""

    def local(params: PyTree, batches: PyTree, sizes: Array, v: PyTree) -> PyTree:
        partial_sum = _dataset_hvp_core(loss_fn, params, batches, sizes, v)
        total = jax.lax.psum(jnp.sum(sizes), data_axis)
        return jax.tree.map(lambda a: (a / total).astype(a.dtype),
                            jax.lax.psum(partial_sum, data_axis))

    in_specs = (P(), P(data_axis), P(data_axis), P())
    # check_vma=False on purpose: with varying-manual-axes checking, autodiff would already sum
    # the gradient w.r.t. the replicated params across data_axis (the transpose of the
    # implicit pvary is a psum), and the explicit psum of SPEC 1.1 would count it twice.
    return jax.shard_map(local, mesh=mesh, in_specs=in_specs, out_specs=P(),
                         axis_names={data_axis}, check_vma=False)(params, batches, sizes, v)


@functools.partial(jax.jit, static_argnums=(0, 1, 2))
def _sharded_linearize_jit(loss_fn: LossFn, mesh: Mesh, data_axis: str, params: PyTree,
                           batches: PyTree, sizes: Array) -> Partial:
    """``jax.linearize`` of ``p -> psum_data(sum_{b local} n_b grad L_b(p)) / psum_data(n)``.

    The tangent map of the data-parallel gradient is the data-parallel HVP; its residuals
    (the per-batch forward/backward values of the scan) are computed inside the
    ``shard_map``, so they come out split over ``data_axis`` like the batches.
    """

    def local(params: PyTree, batches: PyTree, sizes: Array) -> PyTree:
        partial_sum = _dataset_grad(loss_fn, params, batches, sizes)
        total = jax.lax.psum(jnp.sum(sizes), data_axis)
        return jax.tree.map(lambda a: (a / total).astype(a.dtype),
                            jax.lax.psum(partial_sum, data_axis))

    def grad(p: PyTree) -> PyTree:
        # check_vma=False for the same reason as in _sharded_hvp_jit (explicit psum)
        return jax.shard_map(local, mesh=mesh, in_specs=(P(), P(data_axis), P(data_axis)),
                             out_specs=P(), axis_names={data_axis},
                             check_vma=False)(p, batches, sizes)

    return jax.linearize(grad, params)[1]


@dataclasses.dataclass(frozen=True)
class _ShardedLinearHVP:
    """Static part of a linearised sharded operator; ``mesh`` is read by the spectrum routines."""

    mesh: Mesh
    data_axis: str

    def __call__(self, f_jvp: Partial, v: PyTree) -> PyTree:
        return _apply_linear(f_jvp, v)


@dataclasses.dataclass(frozen=True)
class _ShardedDatasetHVP:
    """Static part of a sharded data-set operator (equal for the same loss, mesh and axis).

    ``mesh`` is read by the spectrum routines to lay out the Lanczos vectors.
    """

    loss_fn: LossFn
    mesh: Mesh
    data_axis: str

    def __call__(self, params: PyTree, batches: PyTree, sizes: Array, v: PyTree) -> PyTree:
        return _sharded_hvp_jit(self.loss_fn, self.mesh, self.data_axis, params, batches,
                                sizes, v)


def _check_params_on_mesh(params: PyTree, mesh: Mesh) -> None:
    """Committed jax arrays must live on the mesh's devices (``ValueError`` naming params)."""
    devices = set(mesh.devices.flat)
    for x in jax.tree.leaves(params):
        if isinstance(x, jax.Array) and x.committed and not set(x.sharding.device_set) <= devices:
            raise ValueError("params live on devices outside mesh; place them on it, e.g. "
                             "prune_jax.sharding.replicate(params, mesh) or shard_params(...)")


def sharded_hvp_operator(loss_fn: LossFn, params: PyTree, batches: PyTree, *, mesh: Mesh,
                         batch_sizes: Any = None, data_axis: str = DATA_AXIS,
                         process_local: bool = False, linearize: bool = False) -> Partial:
    """The exact full-data-set HVP operator, data-parallel over ``mesh`` (SPEC 1.1).

    Same contract as :func:`~prune_jax.curvature.hvp_operator` with ``batches``:
    ``loss_fn(params, batch)`` is the mean loss of one batch, ``batches`` has leaves
    ``(num_batches, ...)``, ``batch_sizes`` gives ``n_b`` (default: equal), and the operator
    is ``v -> (sum_b n_b H_b v) / (sum_b n_b)``, equal to the one-device operator up to the
    order of floating-point summation.

    The batches are split over the mesh axis ``data_axis`` by
    :func:`prune_jax.sharding.shard_batches` (padded with zero-size batches to a multiple of
    its size; arrays already laid out as ``NamedSharding(mesh, P(data_axis))`` are kept);
    ``process_local=True`` means each process passes only its own batches (multi-host).
    ``params`` may be replicated, or sharded over the other mesh axes
    (:func:`prune_jax.sharding.shard_params`); ``v`` then takes the same layout, and jit
    propagates it. Each product: every device scans its local batches (one batch's
    activations at a time), then one ``psum`` of a parameter-sized pytree over ``data_axis``.

    ``linearize=False`` (default): every product recomputes each local batch's forward and
    backward pass (memory: one batch's activations per device). ``linearize=True`` (the
    amortised form of SPEC 1.1): the sharded data-set gradient is linearised once, here
    (:func:`jax.linearize` through the ``shard_map``), and each product runs only the tangent
    pass and the ``psum``. The stored residuals are those of every local batch (about the
    forward activations of the device's share of the data set, padding batches included),
    held on the devices for the operator's lifetime; use it when they fit.

    Pass the operator to ``lanczos``/``slq``/``hutchinson_trace``/``top_eigenvalues``: they
    split their flat vectors and Lanczos basis over all devices of ``mesh``.

    Example:
        >>> loss = lambda p, b: jnp.mean((b @ p) ** 2)               # H = 2 * ones((3, 3))
        >>> mesh = pj.sharding.make_mesh()                          # all devices on "data"
        >>> op = sharded_hvp_operator(loss, jnp.ones(3), jnp.ones((4, 8, 3)), mesh=mesh)
        >>> op(jnp.array([1.0, 0.0, 0.0]))
        Array([2., 2., 2.], dtype=float32)
        >>> q = slq(op, jnp.ones(3), key=jax.random.key(0), num_probes=2, num_steps=2)
    """
    if not callable(loss_fn):
        raise TypeError(f"loss_fn must be callable, got {type(loss_fn).__name__}")
    if not isinstance(mesh, Mesh):
        raise TypeError(f"mesh must be a jax.sharding.Mesh (e.g. prune_jax.sharding."
                        f"make_mesh()), got {type(mesh).__name__}")
    if not isinstance(linearize, bool):
        raise TypeError(f"linearize must be a bool, got {type(linearize).__name__}")
    check_axis(mesh, data_axis, "data_axis")
    check_tree(params, "params")
    _check_params_on_mesh(params, mesh)
    dtype = jnp.result_type(*jax.tree.leaves(params))
    placed = shard_batches(batches, mesh, data_axis, batch_sizes=batch_sizes, dtype=dtype,
                           process_local=process_local)
    if linearize:
        f_jvp = _sharded_linearize_jit(loss_fn, mesh, data_axis, params, placed.batches,
                                       placed.sizes)
        return Partial(_ShardedLinearHVP(mesh, data_axis), f_jvp)
    return Partial(_ShardedDatasetHVP(loss_fn, mesh, data_axis), params, placed.batches,
                   placed.sizes)


def sharded_dataset_hvp(loss_fn: LossFn, params: PyTree, batches: PyTree, v: PyTree, *,
                        mesh: Mesh, batch_sizes: Any = None,
                        data_axis: str = DATA_AXIS) -> PyTree:
    """One data-parallel full-data-set HVP (:func:`sharded_hvp_operator` applied to ``v``).

    ``(sum_b n_b H_b v) / (sum_b n_b)`` (SPEC 1.1), the batches split over ``data_axis`` of
    ``mesh``; equals :func:`~prune_jax.curvature.dataset_hvp` up to rounding.

    Example:
        >>> loss = lambda p, b: jnp.mean((b @ p) ** 2)
        >>> sharded_dataset_hvp(loss, jnp.ones(2), jnp.ones((3, 5, 2)), jnp.array([1.0, 0.0]),
        ...                     mesh=pj.sharding.make_mesh())
        Array([2., 2.], dtype=float32)
    """
    op = sharded_hvp_operator(loss_fn, params, batches, mesh=mesh, batch_sizes=batch_sizes,
                              data_axis=data_axis)
    _check_v(params, v)
    return op(v)
