"""Device meshes and shardings for running the toolkit beyond one device (SPEC 1.1-1.2, 2.3).

JAX's own SPMD machinery only: :class:`jax.sharding.Mesh`, :class:`~jax.sharding.NamedSharding`
/ :class:`~jax.sharding.PartitionSpec` (and, in :func:`prune_jax.curvature.hvp_operator` with
``mesh=``, :func:`jax.shard_map` with :func:`jax.lax.psum`). Nothing here runs a computation;
these helpers build meshes and place pytrees on them, so that the compiled programs of the
toolkit receive sharded arguments and ``jit`` propagates the layout.

Conventions:

- The mesh has a ``"data"`` axis (batches are split over it: data parallelism) and a
  ``"model"`` axis (parameters may be split over it, FSDP style). Either may have size 1.
- Mesh axes are :attr:`jax.sharding.AxisType.Auto` (``jax.make_mesh`` defaults to ``Explicit``
  in this JAX version, which would make every sharding part of the array types); with ``Auto``
  axes, unannotated intermediate values are laid out by XLA's sharding propagation. The
  curvature engine rejects arrays on a mesh with Explicit axes with one clear error
  (``prune_jax.validate.check_no_explicit_mesh``) that names the fix.
- Multi-host (one process per host, after :func:`jax.distributed.initialize`): every helper
  builds *global* arrays with :func:`jax.make_array_from_callback` (every process holds the
  same full host copy) or :func:`jax.make_array_from_process_local_data` (every process holds
  only its own rows, ``process_local=True``). See ``docs/scaling.md``.

This module sits at the lowest import level beside :mod:`prune_jax.tree` (it imports nothing
else from the package).
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

__all__ = [
    "DATA_AXIS",
    "MODEL_AXIS",
    "ShardedBatches",
    "check_axis",
    "fsdp_shardings",
    "make_mesh",
    "replicate",
    "shard_batches",
    "shard_params",
]

DATA_AXIS = "data"
MODEL_AXIS = "model"


def _check_mesh(mesh: Any, name: str = "mesh") -> Mesh:
    if not isinstance(mesh, Mesh):
        raise TypeError(f"{name} must be a jax.sharding.Mesh (e.g. prune_jax.sharding."
                        f"make_mesh()), got {type(mesh).__name__}")
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

    Args:
      data: number of devices along ``"data"`` (batches are split over it). Default: all
        devices divided by ``model``.
      model: number of devices along ``"model"`` (parameters may be split over it; 1 = pure
        data parallelism).
      devices: the devices to use (default :func:`jax.devices`, i.e. every device of every
        process in a multi-host run).

    Example:
        >>> mesh = make_mesh()                 # every device on "data"
        >>> mesh = make_mesh(data=4, model=2)  # 8 devices: 4-way data x 2-way FSDP
    """
    devices = list(jax.devices() if devices is None else devices)
    if not devices:
        raise ValueError("devices must not be empty")
    if isinstance(model, bool) or not isinstance(model, int) or model < 1:
        raise ValueError(f"model must be an int >= 1, got {model!r}")
    if data is None:
        if len(devices) % model:
            raise ValueError(f"model={model} does not divide the number of devices "
                             f"({len(devices)})")
        data = len(devices) // model
    if isinstance(data, bool) or not isinstance(data, int) or data < 1:
        raise ValueError(f"data must be an int >= 1, got {data!r}")
    if data * model > len(devices):
        raise ValueError(f"data * model = {data * model} devices requested, but only "
                         f"{len(devices)} are available")
    return jax.make_mesh((data, model), (DATA_AXIS, MODEL_AXIS),
                         axis_types=(AxisType.Auto, AxisType.Auto),
                         devices=devices[:data * model])


def _global_array(x: Any, sharding: NamedSharding) -> jax.Array:
    """Place a full host (or single-device) copy of ``x`` as a global array on ``sharding``.

    Uses :func:`jax.make_array_from_callback`, which works with one process and with many
    (each process fills only its addressable shards from its own full copy).
    """
    if isinstance(x, jax.Array) and x.sharding == sharding:
        return x
    if isinstance(x, jax.Array) and x.is_fully_addressable and jax.process_count() == 1:
        return jax.device_put(x, sharding)
    host = np.asarray(x)
    return jax.make_array_from_callback(host.shape, sharding, lambda idx: host[idx])


def replicate(tree: PyTree, mesh: Mesh) -> PyTree:
    """Every leaf of ``tree`` fully replicated on ``mesh`` (``NamedSharding(mesh, P())``).

    Multi-host safe: every process must hold the same values.
    """
    mesh = _check_mesh(mesh)
    sharding = NamedSharding(mesh, P())
    return jax.tree.map(lambda x: _global_array(x, sharding), tree)


def _axes_size(mesh: Mesh, axes: tuple[str, ...]) -> int:
    return math.prod(mesh.shape[a] for a in axes)


def fsdp_shardings(params: PyTree, mesh: Mesh, axis: str | Sequence[str] = MODEL_AXIS, *,
                   min_size: int = 2**14) -> PyTree:
    """FSDP-style ``NamedSharding`` for every leaf of ``params`` (SPEC 1.1, parameters sharded).

    Each leaf with at least ``min_size`` entries is split over the mesh axis (or axes)
    ``axis`` along its largest dimension that the axis size divides (ties: the last such
    dimension, which is the output/neuron axis of a Flax kernel); other leaves (biases,
    normalisation parameters, leaves with no divisible dimension) are replicated.

    Returns a pytree of shardings with the structure of ``params`` (use it with
    :func:`jax.device_put`, as ``out_shardings``, or via :func:`shard_params`).
    """
    mesh = _check_mesh(mesh)
    axes = (axis,) if isinstance(axis, str) else tuple(axis)
    if not axes:
        raise ValueError("axis must name at least one mesh axis")
    for a in axes:
        check_axis(mesh, a, "axis")
    n = _axes_size(mesh, axes)
    spec_axes = axes[0] if len(axes) == 1 else axes

    def one(x: Any) -> NamedSharding:
        shape = np.shape(x)
        if n == 1 or int(np.prod(shape, dtype=np.int64)) < min_size:
            return NamedSharding(mesh, P())
        dims = [d for d in range(len(shape)) if shape[d] % n == 0]
        if not dims:
            return NamedSharding(mesh, P())
        best = max(dims, key=lambda d: (shape[d], d))
        spec = [None] * len(shape)
        spec[best] = spec_axes
        return NamedSharding(mesh, P(*spec))

    return jax.tree.map(one, params)


def shard_params(params: PyTree, mesh: Mesh, axis: str | Sequence[str] = MODEL_AXIS, *,
                 min_size: int = 2**14) -> PyTree:
    """``params`` placed with :func:`fsdp_shardings` (multi-host safe: full copy per process).

    Example:
        >>> mesh = make_mesh(data=4, model=2)
        >>> params = shard_params(params, mesh)          # large kernels split 2-way
    """
    shardings = fsdp_shardings(params, mesh, axis, min_size=min_size)
    return jax.tree.map(_global_array, params, shardings)


class ShardedBatches(NamedTuple):
    """Batches split over the data axis (see :func:`shard_batches`).

    Attributes:
      batches: the batch pytree, leaves ``(num_batches_padded, ...)`` sharded along axis 0.
      sizes: ``(num_batches_padded,)`` float example counts ``n_b`` (0 for padding batches).
      num_padding: how many zero-size padding batches were appended (in total).
    """

    batches: PyTree
    sizes: jax.Array
    num_padding: int


def _leading(batches: PyTree, name: str) -> int:
    leaves = jax.tree.leaves(batches)
    if not leaves:
        raise ValueError(f"{name} must be a non-empty pytree of arrays with a leading "
                         "batch-index axis (num_batches, ...)")
    lead = {int(np.shape(x)[0]) if np.ndim(x) else -1 for x in leaves}
    if -1 in lead or len(lead) != 1 or min(lead) < 1:
        raise ValueError(f"{name} leaves must all share a leading batch-index axis "
                         f"(num_batches >= 1, ...); got leading sizes {sorted(lead)}")
    return lead.pop()


def _host_sizes(batch_sizes: Any, num: int, name: str) -> np.ndarray:
    if batch_sizes is None:
        return np.ones((num,), np.float64)
    sizes = np.asarray(batch_sizes, dtype=np.float64)
    if sizes.shape != (num,):
        raise ValueError(f"{name} must have shape (num_batches,) = ({num},), got {sizes.shape}")
    if not np.all(np.isfinite(sizes)) or np.any(sizes <= 0):
        raise ValueError(f"{name} must be finite and > 0 (number of examples n_b)")
    return sizes


def _pad_rows(x: np.ndarray, pad: int) -> np.ndarray:
    """Append ``pad`` copies of row 0 (finite data; they get weight 0)."""
    if pad == 0:
        return x
    return np.concatenate([x, np.repeat(x[:1], pad, axis=0)], axis=0)


def shard_batches(batches: PyTree, mesh: Mesh, axis: str = DATA_AXIS, *,
                  batch_sizes: Any = None, dtype: Any = jnp.float32,
                  process_local: bool = False) -> ShardedBatches:
    """Split a stack of batches over the mesh axis ``axis`` (data parallelism, SPEC 1.1).

    ``batches`` has leaves ``(num_batches, ...)`` (the layout of
    :func:`~prune_jax.curvature.hvp_operator`); ``batch_sizes`` gives ``n_b`` (default: equal).
    The batch-index axis is padded to a multiple of the number of devices on ``axis`` with
    copies of the first batch of size 0 (they contribute nothing to a size-weighted sum, but
    cost one batch of compute each), then placed with ``NamedSharding(mesh, P(axis))``: each
    device holds ``num_batches / devices`` whole batches.

    ``process_local=True`` (multi-host): ``batches`` and ``batch_sizes`` are this process's
    own batches only (the same number on every process); padding is per process, and the
    global arrays are assembled with :func:`jax.make_array_from_process_local_data`.
    Otherwise every process passes the same full data set. ``dtype`` is that of ``sizes``
    (use the parameters' dtype).
    """
    mesh = _check_mesh(mesh)
    check_axis(mesh, axis, "axis")
    if not isinstance(process_local, bool):
        raise TypeError(f"process_local must be a bool, got {type(process_local).__name__}")
    num = _leading(batches, "batches")
    sizes = _host_sizes(batch_sizes, num, "batch_sizes")
    sharding = NamedSharding(mesh, P(axis))
    n_axis = mesh.shape[axis]
    if process_local:
        local_devices = {d for d in mesh.local_devices}
        # devices of this process along the data axis (the other axes replicate the batches)
        axis_index = mesh.axis_names.index(axis)
        ids = mesh.device_ids
        rows = {int(np.argwhere(ids == d.id)[0][axis_index]) for d in local_devices}
        per_process = max(len(rows), 1)
        pad = (-num) % per_process
        leaves, treedef = jax.tree.flatten(batches)
        padded = [_pad_rows(np.asarray(x), pad) for x in leaves]
        sizes = np.concatenate([sizes, np.zeros(pad)])
        out = [jax.make_array_from_process_local_data(sharding, x) for x in padded]
        glob_sizes = jax.make_array_from_process_local_data(sharding,
                                                            sizes.astype(np.dtype(dtype)))
        total_pad = pad * jax.process_count()
        return ShardedBatches(jax.tree.unflatten(treedef, out), glob_sizes, total_pad)
    pad = (-num) % n_axis
    sizes = np.concatenate([sizes, np.zeros(pad)]).astype(np.dtype(dtype))
    if pad == 0 and all(isinstance(x, jax.Array) and x.sharding == sharding
                        for x in jax.tree.leaves(batches)):
        return ShardedBatches(batches, _global_array(sizes, sharding), 0)
    names = leaf_names(batches)
    leaves, treedef = jax.tree.flatten(batches)
    out = []
    for n, x in zip(names, leaves, strict=True):
        if isinstance(x, jax.Array) and not x.is_fully_addressable:
            raise ValueError(f"batches leaf {n!r} is a multi-process array that is not laid "
                             f"out as NamedSharding(mesh, P({axis!r})) with a leading axis "
                             f"divisible by {n_axis}; pass host arrays or process_local=True")
        out.append(_global_array(_pad_rows(np.asarray(x), pad), sharding))
    return ShardedBatches(jax.tree.unflatten(treedef, out), _global_array(sizes, sharding), pad)
