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


def lane_sums(values: Sequence[Array]) -> list[Array]:
    """Sums of equally long 1-D arrays in one fused read, at memory speed on XLA:CPU.

    Rows of ``LANES`` entries are reduced by one variadic reduction (every array is an
    elementwise expression of the same input, so XLA evaluates all of them in a single loop
    over it), an ``optimization_barrier`` follows (XLA:CPU would otherwise merge the two
    stages into one long reduction, several times slower), then the row sums and the tail are
    summed. Two power sums over 25M float32 weights this way take about the time of one plain
    ``jnp.sum`` (``benchmarks/bench_sparsity.py``).
    """
    values = list(values)
    n = values[0].shape[0]
    m = n // LANES * LANES
    totals = [jnp.zeros((), v.dtype) for v in values]
    if m:
        rows = tuple(v[:m].reshape(-1, LANES) for v in values)
        inits = tuple(jnp.zeros((), v.dtype) for v in values)
        sums = lax.reduce(rows, inits, lambda a, b: tuple(x + y for x, y in zip(a, b, strict=True)),
                          (1,))
        sums = lax.optimization_barrier(tuple(sums))
        totals = [t + jnp.sum(r) for t, r in zip(totals, sums, strict=True)]
    if n > m:
        totals = [t + jnp.sum(v[m:]) for t, v in zip(totals, values, strict=True)]
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
