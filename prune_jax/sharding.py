"""Device meshes and shardings (SPEC 1.1-1.2, 2.3): build meshes, place pytrees on them.

The mesh has a ``"data"`` axis (batches) and a ``"model"`` axis (parameters, FSDP style), both
``Auto`` (``Explicit`` axes, ``jax.make_mesh``'s default, are rejected by the toolkit).
Multi-host, every helper builds *global* arrays from a full host copy in every process, or from
each process's own rows (``process_local=True``). See ``docs/scaling.md``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from prune_jax.tree import PyTree, leaf_names

__all__ = ["DATA_AXIS", "MODEL_AXIS", "ShardedBatches", "check_axis", "fsdp_shardings", "make_mesh",
           "replicate", "shard_batches", "shard_params"]

DATA_AXIS = "data"
MODEL_AXIS = "model"


def _check_mesh(mesh: Any) -> Mesh:
    if not isinstance(mesh, Mesh):
        raise TypeError("mesh must be a jax.sharding.Mesh (e.g. prune_jax.sharding.make_mesh()),"
                        f" got {type(mesh).__name__}")
    return mesh


def check_axis(mesh: Mesh, axis: str, name: str = "axis") -> str:
    """``axis`` if it names an axis of ``mesh``; else ``ValueError`` naming ``name``."""
    if not isinstance(axis, str) or axis not in mesh.axis_names:
        raise ValueError(f"{name} must be one of the mesh axes {tuple(mesh.axis_names)}, "
                         f"got {axis!r}")
    return axis


def make_mesh(data: int | None = None, model: int = 1, *,
              devices: Sequence[Any] | None = None) -> Mesh:
    """A ``(data, model)`` device mesh with ``Auto`` axes (SPEC 1.1: data-parallel HVPs).

    ``data``: devices along ``"data"`` (default: all divided by ``model``); ``model``: devices
    along ``"model"`` (1 = pure data parallelism); ``devices``: default :func:`jax.devices`.

    Example:
        >>> mesh = make_mesh()                 # every device on "data"
        >>> mesh = make_mesh(data=4, model=2)  # 8 devices: 4-way data x 2-way FSDP
    """
    devices = list(jax.devices() if devices is None else devices)
    if not devices:
        raise ValueError("devices must not be empty")
    for name, value in (("model", model), ("data", 1 if data is None else data)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    if data is None:
        if len(devices) % model:
            raise ValueError(f"model={model} does not divide the number of devices "
                             f"({len(devices)})")
        data = len(devices) // model
    if data * model > len(devices):
        raise ValueError(f"data * model = {data * model} devices requested, but only "
                         f"{len(devices)} are available")
    return jax.make_mesh((data, model), (DATA_AXIS, MODEL_AXIS),
                         axis_types=(AxisType.Auto, AxisType.Auto),
                         devices=devices[:data * model])


def _global_array(x: Any, sharding: NamedSharding) -> jax.Array:
    """A full copy of ``x`` as a global array on ``sharding`` (each process fills its shards)."""
    if isinstance(x, jax.Array) and x.sharding == sharding:
        return x
    if isinstance(x, jax.Array) and x.is_fully_addressable and jax.process_count() == 1:
        return jax.device_put(x, sharding)
    host = np.asarray(x)
    return jax.make_array_from_callback(host.shape, sharding, lambda idx: host[idx])


def replicate(tree: PyTree, mesh: Mesh) -> PyTree:
    """Every leaf of ``tree`` fully replicated on ``mesh`` (``NamedSharding(mesh, P())``;
    multi-host: every process must hold the same values)."""
    sharding = NamedSharding(_check_mesh(mesh), P())
    return jax.tree.map(lambda x: _global_array(x, sharding), tree)


def fsdp_shardings(params: PyTree, mesh: Mesh, axis: str | Sequence[str] = MODEL_AXIS, *,
                   min_size: int = 2**14) -> PyTree:
    """FSDP-style ``NamedSharding`` for every leaf of ``params`` (SPEC 1.1, parameters sharded).

    Each leaf with at least ``min_size`` entries is split over the mesh axis (or axes)
    ``axis`` along its largest dimension that the axis size divides (ties: the last, the
    output axis of a Flax kernel); other leaves are replicated. Returns a pytree of shardings
    like ``params`` (for :func:`jax.device_put`, ``out_shardings`` or :func:`shard_params`).
    """
    mesh = _check_mesh(mesh)
    axes = (axis,) if isinstance(axis, str) else tuple(axis)
    if not axes:
        raise ValueError("axis must name at least one mesh axis")
    for a in axes:
        check_axis(mesh, a, "axis")
    n = math.prod(mesh.shape[a] for a in axes)

    def one(x: Any) -> NamedSharding:
        shape = np.shape(x)
        dims = [d for d in range(len(shape)) if shape[d] % n == 0]
        if n == 1 or int(np.prod(shape, dtype=np.int64)) < min_size or not dims:
            return NamedSharding(mesh, P())
        best = max(dims, key=lambda d: (shape[d], d))
        return NamedSharding(mesh, P(*[(axes[0] if len(axes) == 1 else axes) if d == best
                                       else None for d in range(len(shape))]))

    return jax.tree.map(one, params)


def shard_params(params: PyTree, mesh: Mesh, axis: str | Sequence[str] = MODEL_AXIS, *,
                 min_size: int = 2**14) -> PyTree:
    """``params`` placed with :func:`fsdp_shardings` (multi-host safe: full copy per process),
    e.g. ``shard_params(params, make_mesh(data=4, model=2))`` splits large kernels 2-way."""
    return jax.tree.map(_global_array, params,
                        fsdp_shardings(params, mesh, axis, min_size=min_size))


class ShardedBatches(NamedTuple):
    """Batches split over the data axis (:func:`shard_batches`): ``batches``, leaves
    ``(num_batches_padded, ...)`` sharded along axis 0; ``sizes``, the example counts ``n_b``
    (0 for padding); ``num_padding``, how many padding batches were appended in total."""

    batches: PyTree
    sizes: jax.Array
    num_padding: int


def shard_batches(batches: PyTree, mesh: Mesh, axis: str = DATA_AXIS, *,
                  batch_sizes: Any = None, dtype: Any = jnp.float32,
                  process_local: bool = False) -> ShardedBatches:
    """Split a stack of batches over the mesh axis ``axis`` (data parallelism, SPEC 1.1).

    ``batches`` has leaves ``(num_batches, ...)``; ``batch_sizes`` gives ``n_b`` (default:
    equal). The batch axis is padded to a multiple of the devices on ``axis`` with size-0
    copies of the first batch, then placed with ``NamedSharding(mesh, P(axis))``.
    ``process_local=True`` (multi-host): each process passes only its own batches (the same
    number everywhere), padded per process. ``dtype``: that of ``sizes``.
    """
    mesh = _check_mesh(mesh)
    check_axis(mesh, axis, "axis")
    if not isinstance(process_local, bool):
        raise TypeError(f"process_local must be a bool, got {type(process_local).__name__}")
    leaves, treedef = jax.tree.flatten(batches)
    if not leaves:
        raise ValueError("batches must be a non-empty pytree of arrays with a leading "
                         "batch-index axis (num_batches, ...)")
    lead = {int(np.shape(x)[0]) if np.ndim(x) else -1 for x in leaves}
    if -1 in lead or len(lead) != 1 or min(lead) < 1:
        raise ValueError("batches leaves must all share a leading batch-index axis "
                         f"(num_batches >= 1, ...); got leading sizes {sorted(lead)}")
    num = lead.pop()
    sizes = np.ones(num) if batch_sizes is None else np.asarray(batch_sizes, np.float64)
    if sizes.shape != (num,):
        raise ValueError(f"batch_sizes must have shape (num_batches,) = ({num},), "
                         f"got {sizes.shape}")
    if not np.all(np.isfinite(sizes)) or np.any(sizes <= 0):
        raise ValueError("batch_sizes must be finite and > 0 (number of examples n_b)")
    sharding = NamedSharding(mesh, P(axis))
    if process_local:   # pad to a multiple of this process's devices along the data axis
        column = mesh.axis_names.index(axis)
        rows = {int(np.argwhere(mesh.device_ids == d.id)[0][column])
                for d in mesh.local_devices}
        pad = (-num) % max(len(rows), 1)
        place = lambda x: jax.make_array_from_process_local_data(sharding, x)
        total_pad = pad * jax.process_count()
    else:
        pad = total_pad = (-num) % mesh.shape[axis]
        place = lambda x: _global_array(x, sharding)
        if pad == 0 and all(isinstance(x, jax.Array) and x.sharding == sharding
                            for x in leaves):
            return ShardedBatches(batches, place(sizes.astype(np.dtype(dtype))), 0)
        for n, x in zip(leaf_names(batches), leaves, strict=True):
            if isinstance(x, jax.Array) and not x.is_fully_addressable:
                raise ValueError(f"batches leaf {n!r} is a multi-process array that is not "
                                 f"laid out as NamedSharding(mesh, P({axis!r})) with a leading "
                                 f"axis divisible by {mesh.shape[axis]}; pass host arrays or "
                                 "process_local=True")
    # padding: copies of row 0 (finite data) with size 0
    out = [place(np.concatenate([x, np.repeat(x[:1], pad, axis=0)]) if pad else x)
           for x in map(np.asarray, leaves)]
    sizes = np.concatenate([sizes, np.zeros(pad)]).astype(np.dtype(dtype))
    return ShardedBatches(jax.tree.unflatten(treedef, out), place(sizes), total_pad)
