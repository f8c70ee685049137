"""Pruning scopes as per-leaf views whose columns are units (private; SPEC 3.2).

A *scope unit* is the set of weights that one pruning decision treats together:

- ``"global"``: all prunable leaves together form one unit;
- ``"layer"``: each prunable leaf is one unit;
- ``"neuron"``: each output unit of a leaf is one unit. In the Flax layout the output axis of a
  kernel is its LAST axis, so column ``j`` of ``leaf.reshape(-1, leaf.shape[-1])`` holds the
  weights of neuron ``j`` (all other axes, e.g. ``(kh, kw, c_in)`` of a conv kernel, form the
  unit). A 1-D prunable leaf under ``"neuron"`` has one weight per unit.

Under ``"neuron"`` every leaf is viewed as an ``(m, u)`` matrix whose columns are units; under
``"layer"`` and ``"global"`` as a flat ``(m,)`` vector, one column (flat reductions are several
times faster than ``(m, 1)`` column reductions on XLA:CPU, measured). Per-unit statistics are
reductions over the rows (:func:`per_unit`), one ``(u,)`` array per leaf, and :func:`combine`
merges the per-leaf parts of the global unit. Rows are in flat (row-major) order of the leaf,
so "lower row" means "lower flat index"; :func:`flat_offsets` extends that order across the
leaves of the global unit (leaves in ``jax.tree.leaves`` order).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from prune_jax.sparsity._checks import Scope

Array = jax.Array


def unit_view(leaf: Array, scope: Scope) -> Array:
    """``leaf`` as ``(m, u)`` columns of neurons (``"neuron"``) or as a flat ``(m,)`` unit."""
    if scope == "neuron" and np.ndim(leaf) >= 1:
        return leaf.reshape(-1, leaf.shape[-1])
    return leaf.reshape(-1)


def per_unit(reduce: Callable[..., Array], view: Array, **kwargs: object) -> Array:
    """Reduce a unit view over its rows into a ``(u,)`` array (``u = 1`` for a flat view)."""
    return reduce(view, axis=0, **kwargs).reshape(-1)


def row_index(view: Array, offset: int) -> Array:
    """Flat position of every row of ``view`` in its unit (int32, broadcastable to ``view``)."""
    shape = (view.shape[0],) + (1,) * (view.ndim - 1)
    return lax.broadcasted_iota(jnp.int32, shape, 0) + offset


def units_per_leaf(shape: tuple[int, ...], scope: Scope) -> int:
    """Number of columns ``u`` of the view of a leaf with this shape."""
    return int(shape[-1]) if scope == "neuron" and len(shape) >= 1 else 1


def unit_sizes(shapes: Sequence[tuple[int, ...]], scope: Scope) -> list[int]:
    """Size ``m`` of every unit, per leaf (the total prunable size under ``"global"``)."""
    sizes = [int(np.prod(s, dtype=np.int64)) for s in shapes]
    if scope == "global":
        return [sum(sizes)] * len(sizes)
    return [n // units_per_leaf(s, scope) if n else 0 for n, s in zip(sizes, shapes, strict=True)]


def combine(per_leaf: Sequence[Array], scope: Scope,
            op: Callable[[Array, Array], Array]) -> list[Array]:
    """Merge per-leaf column statistics into per-unit ones.

    Under ``"global"`` the single unit spans every leaf, so the ``(1,)`` statistics of all
    leaves are reduced with ``op`` and the total is returned once per leaf; otherwise each
    column already is a unit and the statistics are returned unchanged.
    """
    if scope != "global":
        return list(per_leaf)
    total = functools.reduce(op, per_leaf)
    return [total] * len(per_leaf)


def flat_offsets(shapes: Sequence[tuple[int, ...]], scope: Scope) -> list[int]:
    """Row offset of every leaf inside its unit's flat order (non-zero only for ``"global"``)."""
    if scope != "global":
        return [0] * len(shapes)
    sizes = [int(np.prod(s, dtype=np.int64)) for s in shapes]
    return [int(o) for o in np.concatenate([[0], np.cumsum(sizes)[:-1]])]


LANES = 32  # entries per row of a flat reduction (see lane_sums)
# Flat reductions take a multiple of this many rows (the rest is a tail): XLA:CPU splits the
# rows of a reduction between threads, and with an odd number of rows it ran 2.7-4x slower
# (2 cores, measured on 234375 vs 234374 rows of 32).
ROW_BLOCK = 32

Lanes = Literal["flat", "split", "plain"]


def lane_layout(x: Array | np.ndarray) -> Lanes:
    """How :func:`lane_sums` may view ``x`` without moving data between devices.

    ``"flat"``: unsharded or replicated (any view is free: rows of 32 of the flattened array);
    ``"split"``: sharded, and splitting the last axis into ``(last // 32, 32)`` keeps every
    shard whole; ``"plain"``: otherwise (one plain ``jnp.sum`` per array, which XLA
    partitions without gathering; on XLA:CPU it is slower). Decided from the concrete
    array's sharding, or for a tracer from ``jax.typeof(x).sharding`` (explicit meshes;
    under an automatic mesh a tracer is ``"flat"`` and XLA places the data).
    """
    shape = np.shape(x)
    sharding = (getattr(jax.typeof(x), "sharding", None) if isinstance(x, jax.core.Tracer)
                else getattr(x, "sharding", None))
    spec = getattr(sharding, "spec", None)
    if sharding is None or (spec is None and len(sharding.device_set) <= 1):
        return "flat"
    if spec is None:  # a multi-device sharding other than NamedSharding
        return "flat" if sharding.is_fully_replicated else "plain"
    spec = tuple(spec) + (None,) * (len(shape) - len(spec))
    if all(a is None for a in spec):
        return "flat"
    last = spec[-1] if shape else None
    shards = 1
    for a in (() if last is None else (last,) if isinstance(last, str) else last):
        shards *= int(sharding.mesh.shape[a])
    if shape and shape[-1] % LANES == 0 and (shape[-1] // LANES) % shards == 0:
        return "split"
    return "plain"


def lane_sums(x: Array, fn: Callable[[Array], Sequence[Array]],
              layout: Lanes = "flat") -> list[Array]:
    """Sums of the elementwise arrays ``fn(x)``, in one fused read of ``x`` at memory speed on
    XLA:CPU.

    Rows of ``LANES`` entries (of the flattened ``x``, or of its last axis for
    ``layout="split"``; see :func:`lane_layout`) are reduced by one variadic reduction, so XLA
    evaluates every output of ``fn`` in a single loop over ``x``. An ``optimization_barrier``
    follows (XLA:CPU would otherwise merge the two stages into one long reduction, several
    times slower), then the row sums are summed. A flat tail (``size % 1024`` entries) gets
    ``fn`` applied to its own slice: applying ``fn`` once and slicing its outputs would make
    XLA materialize them (a write and a read of the whole array). Two power sums over 25M
    float32 weights this way take about the time of one plain ``jnp.sum``
    (``benchmarks/bench_sparsity.py``). ``layout="plain"`` is one ``jnp.sum`` per output.
    """
    shape = x.shape
    if layout == "plain":
        return [jnp.sum(v) for v in fn(x)]
    tail: Array | None = None
    if layout == "flat" or not shape:
        flat = x.reshape(-1)
        n = flat.shape[0]
        m = n // (LANES * ROW_BLOCK) * (LANES * ROW_BLOCK)
        view = flat[:m].reshape(-1, LANES) if m else None
        tail = flat[m:] if n > m else None
    else:
        view = x.reshape(*shape[:-1], shape[-1] // LANES, LANES)
    totals: list[Array] | None = None
    if view is not None:
        rows = tuple(fn(view))
        inits = tuple(jnp.zeros((), v.dtype) for v in rows)
        sums = lax.reduce(rows, inits,
                          lambda a, b: tuple(u + v for u, v in zip(a, b, strict=True)),
                          (view.ndim - 1,))
        sums = lax.optimization_barrier(tuple(sums))
        totals = [jnp.sum(r) for r in sums]
    if tail is not None:
        tails = [jnp.sum(v) for v in fn(tail)]
        totals = tails if totals is None else [t + u for t, u in zip(totals, tails, strict=True)]
    if totals is None:  # an empty array
        return [jnp.zeros((), v.dtype) for v in fn(flat)]
    return totals


# Relative tolerance of host-side count rounding: float64 evaluation error of the formulas that
# produce counts is ~1e-15 relative, so 1e-9 is far above it and far below one count for any
# unit smaller than 1e9 weights.
COUNT_RTOL = 1e-9


def floor_count(x: np.ndarray | float) -> np.ndarray:
    """``floor(x)`` in float64 on the host, robust to rounding (SPEC 3.2).

    A value within ``COUNT_RTOL`` (relative) below an integer counts as that integer, so that
    e.g. ``0.29 * 100`` or an ``r`` that should equal ``d`` exactly do not lose one weight to
    floating error. NaN maps to 0.
    """
    x = np.asarray(x, dtype=np.float64)
    out = np.floor(x + COUNT_RTOL * np.maximum(1.0, np.abs(x)))
    return np.where(np.isnan(out), 0, out).astype(np.int64)
