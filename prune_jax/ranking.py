"""Magnitude ranking: which weights "remove the k smallest" removes (SPEC 2.3, 3.2).

The leaves, in the order given, are flattened in C order and concatenated; positions rank by
ascending ``|w|``, ties by the lower position (NaN/Inf above every finite magnitude). Scope
units (SPEC 3.2): ``"global"``, all leaves; ``"layer"``, each leaf; ``"neuron"``, each index
``j`` of a leaf's LAST axis (``leaf[..., j]``), numbered leaf by leaf. numpy on the host when
this process can read the arrays (no compilation), else the same code in ``jax.numpy``.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from prune_jax.tree import fully_addressable, to_host
from prune_jax.validate import check_choice, is_concrete

__all__ = ["MagnitudeRanking", "prefix_norms", "rank_magnitudes", "ranks", "remove_smallest",
           "unit_sizes", "unit_view"]

BLOCK = 2048  # magnitudes per float64 block sum of MagnitudeRanking.block_sums


class MagnitudeRanking(NamedTuple):
    """All magnitudes in ascending order (numpy, from :func:`rank_magnitudes`): ``order``,
    the positions (``None`` with ``with_order=False``); ``magnitudes``, sorted ``|w|``;
    ``block_sums[j]``, the float64 sum of squares of ``magnitudes[:j * BLOCK]``."""

    order: np.ndarray | None
    magnitudes: np.ndarray
    block_sums: np.ndarray


def readable(*arrays: Sequence[Any] | None) -> list[list[np.ndarray] | None] | None:
    """numpy copies of these lists of arrays (``None`` stays) if this process can read them
    all, else ``None``: traced, or on other processes' devices (use the ``jnp`` code)."""
    if not (is_concrete(arrays) and fully_addressable(arrays)):
        return None
    return [None if a is None else [np.asarray(x) for x in a] for a in arrays]


def float_dtype(leaves: Sequence[Any]) -> np.dtype:
    """float64 if a leaf is 64-bit, else float32: the dtype magnitudes are ranked in."""
    wide = any(np.dtype(x.dtype).itemsize > 4 for x in leaves)
    return np.dtype(np.float64 if wide else np.float32)


def rank_magnitudes(leaves: Sequence[Any], *, with_order: bool = True) -> MagnitudeRanking:
    """Sort the magnitudes of ``leaves`` (concrete; concatenated flat) once, on the host;
    ``with_order=False`` skips the (slower) stable ``argsort``.

    Example:
      >>> r = rank_magnitudes([np.array([[3.0, -1.0], [2.0, 1.0]]), np.array([-0.5])])
      >>> r.order.tolist(), r.magnitudes.tolist()          # the tie 1.0 = |-1.0|: position 1 first
      ([4, 1, 3, 2, 0], [0.5, 1.0, 1.0, 2.0, 3.0])
    """
    arrays = [np.asarray(x) for x in (leaves if fully_addressable(leaves) else to_host(leaves))]
    dtype = float_dtype(arrays)
    mags = np.concatenate([np.abs(a.astype(dtype, copy=False)).reshape(-1) for a in arrays])
    order = np.argsort(mags, kind="stable") if with_order else None
    mags = mags[order] if with_order else np.sort(mags)
    full = mags[: mags.size - mags.size % BLOCK].reshape(-1, BLOCK)
    sums = np.einsum("ij,ij->i", full, full, dtype=np.float64)
    return MagnitudeRanking(order, mags, np.concatenate([[0.0], np.cumsum(sums)]))


def ranks(ranking: MagnitudeRanking) -> np.ndarray:
    """Rank of every position (the inverse of ``order``; int32, or int64 past ``2**31 - 1``
    weights): ``ranks < k`` marks the ``k`` smallest.

      >>> r = rank_magnitudes([np.array([3.0, -1.0, 2.0, 1.0])])
      >>> ranks(r).tolist()
      [3, 0, 2, 1]
    """
    n = ranking.order.size
    out = np.empty(n, np.int32 if n < 2**31 else np.int64)
    out[ranking.order] = np.arange(n, dtype=out.dtype)
    return out


def prefix_norms(ranking: MagnitudeRanking, k: Any) -> np.ndarray:
    """``R_k``: the l2 norm of the ``k`` smallest magnitudes, in float64, for integer ``k``
    (any shape, ``0 <= k <= n``): a block prefix sum and at most ``BLOCK`` squares per ``k``.

      >>> r = rank_magnitudes([np.array([3.0, -4.0, 12.0])], with_order=False)
      >>> prefix_norms(r, np.array([0, 2, 3])).tolist()
      [0.0, 5.0, 13.0]
    """
    k = np.asarray(k, np.int64)
    n = ranking.magnitudes.size
    if k.size and (k.min() < 0 or k.max() > n):
        raise ValueError(f"k must be in [0, {n}], got values in [{k.min()}, {k.max()}]")
    if n == 0:
        return np.zeros(k.shape)
    block = k // BLOCK
    idx = block[..., None] * BLOCK + np.arange(BLOCK)
    tail = np.where(idx < k[..., None], ranking.magnitudes[np.minimum(idx, n - 1)], 0.0)
    return np.sqrt(ranking.block_sums[block] + np.sum(np.square(tail, dtype=np.float64), -1))


def unit_view(x: Any, scope: str) -> Any:
    """``x`` (numpy or jax) as an ``(m, u)`` matrix whose columns are its scope units
    (``u = 1`` unless ``scope == "neuron"``), rows in flat order.

      >>> unit_view(np.zeros((3, 3, 2, 4)), "neuron").shape   # a conv kernel: 4 units
      (18, 4)
    """
    return x.reshape(-1, x.shape[-1] if scope == "neuron" and x.ndim else 1)


def unit_sizes(shapes: Sequence[tuple[int, ...]], scope: str) -> np.ndarray:
    """Number of weights of every unit, in unit order (int64, one entry under ``"global"``).

      >>> shapes = [(3, 2), (4,)]
      >>> [unit_sizes(shapes, s).tolist() for s in ("global", "layer", "neuron")]
      [[10], [6, 4], [3, 3, 1, 1, 1, 1]]
    """
    sizes = []
    for shape in map(tuple, shapes):
        u = shape[-1] if scope == "neuron" and shape else 1
        sizes += [int(np.prod(shape, dtype=np.int64)) // max(u, 1)] * u
    return np.array([sum(sizes)] if scope == "global" else sizes, np.int64)


def _keys(xp: Any, leaves: list[Any], live: list[Any] | None, dtype: Any) -> Any:
    """All leaves' integer keys, flat and concatenated: the bit patterns of ``|w|`` (ordered
    like ``|w|``, exact for subnormals), ``-1`` where ``live`` is False."""
    int_dtype = np.dtype(f"int{8 * np.dtype(dtype).itemsize}")
    if xp is np:   # written into one buffer: touching fresh host memory is not free
        mags = np.empty(sum(x.size for x in leaves), dtype)
        for x, out in zip(leaves, np.split(mags, np.cumsum([x.size for x in leaves])[:-1]),
                          strict=True):
            np.abs(x.reshape(-1), out=out)
        keys = mags.view(int_dtype)
    else:
        keys = jax.lax.bitcast_convert_type(
            jnp.concatenate([jnp.abs(x.astype(dtype)).reshape(-1) for x in leaves]), int_dtype)
    if live is None:
        return keys
    return xp.where(xp.concatenate([m.reshape(-1) for m in live]), keys,
                    xp.asarray(-1, int_dtype))


def _smallest(xp: Any, keys: Any, k: Any) -> Any:
    """True at the ``k[j]`` smallest entries of every column ``j`` (ties: lower row first)."""
    rows, cols = keys.shape
    kth = xp.clip(k - 1, 0, max(rows - 1, 0))
    if xp is np:
        t = np.partition(keys, np.unique(kth), axis=0)[kth, np.arange(cols)]
    else:
        t = jnp.take_along_axis(jnp.sort(keys, axis=0), kth[None], axis=0)[0]
    removed = keys <= xp.where(k > 0, t, -2)   # the k-th smallest key and every key below
    excess = removed.sum(axis=0) - k           # keys tied with the k-th, past it: they stay
    if xp is not np:
        tied = keys == t
        return removed & ~(tied & (jnp.cumsum(tied, axis=0) > tied.sum(axis=0) - excess))
    if excess.any():   # the same on the few rows that hold a tie
        rows = np.flatnonzero((keys == t).any(axis=1))
        tied = keys[rows] == t
        removed[rows] &= ~(tied & (np.cumsum(tied, axis=0) > tied.sum(axis=0) - excess))
    return removed


def _remove(xp: Any, leaves: list[Any], live: list[Any] | None, k: Any, scope: str
            ) -> list[Any]:
    keys = _keys(xp, leaves, live, float_dtype(leaves))
    ends = np.cumsum([x.size for x in leaves])
    if scope == "global":
        groups = [keys.reshape(-1, 1)]
    else:
        groups = [unit_view(keys[e - x.size:e].reshape(x.shape), scope)
                  for x, e in zip(leaves, ends, strict=True)]
    out, start = [], 0
    for group in groups:
        kk = k[start:start + group.shape[1]]
        start += group.shape[1]
        if live is not None:   # pruned entries (key -1) always go
            kk = xp.maximum(kk, (group < 0).sum(axis=0))
        out.append(_smallest(xp, group, kk) if group.size else xp.zeros(group.shape, bool))
    if scope != "global":
        return [o.reshape(x.shape) for o, x in zip(out, leaves, strict=True)]
    return [out[0][e - x.size:e].reshape(x.shape) for x, e in zip(leaves, ends, strict=True)]


_remove_jit = jax.jit(partial(_remove, jnp), static_argnames="scope")


def remove_smallest(leaves: Sequence[Any], k: Any, *, scope: str = "global",
                    live: Sequence[Any] | None = None) -> list[Any]:
    """Removal masks: True at the ``k`` smallest magnitudes of every scope unit.

    Args:
      leaves: floating arrays (a model's prunable leaves, in ``jax.tree.leaves`` order).
      k: removals per unit: an integer, or one per unit in :func:`unit_sizes` order.
      scope: ``"global"``, ``"layer"`` or ``"neuron"``.
      live: optional boolean arrays like ``leaves`` (False = already pruned): pruned weights
        rank below every magnitude, so a unit loses ``max(k, pruned)``.

    Returns:
      Boolean arrays like ``leaves`` (jax arrays if an input is traced or spans other
      processes' devices, else numpy), ranked in float32 (float64 for float64 leaves).

    Example:
      The 4 smallest of 6 weights (of three tied at 2.0 the first goes); then one per column:

      >>> w = np.array([[1.0, -2.0], [0.5, 2.0], [2.0, 0.1]])
      >>> remove_smallest([w], 4)[0].tolist()
      [[True, True], [True, False], [False, True]]
      >>> remove_smallest([w], 1, scope="neuron")[0].tolist()
      [[False, False], [True, False], [False, True]]
    """
    check_choice(scope, "scope", ("global", "layer", "neuron"))
    leaves = list(leaves)
    live = None if live is None else list(live)
    sizes = unit_sizes([np.shape(x) for x in leaves], scope)
    if sizes.size and sizes.max() >= 2**31:
        raise ValueError("a scope unit of 2**31 weights or more is not supported")
    k = np.broadcast_to(k, sizes.shape) if np.ndim(k) == 0 else k
    if (host := readable(leaves, live)) is None or not is_concrete(k):
        return _remove_jit(leaves, live, jnp.asarray(k, jnp.int32), scope=scope)
    return _remove(np, *host, np.asarray(k, np.int64), scope)
