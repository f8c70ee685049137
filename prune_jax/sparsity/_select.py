"""Exact "remove the k smallest" per scope unit, without sorting (private; SPEC 3.2).

Magnitudes are ranked through their bit patterns: for non-negative IEEE floats the bit pattern
read as a signed integer is monotone in the value, so ``|w|`` becomes an integer *key*, and
already-pruned weights get key ``-1`` (below every magnitude: they are removed first).

The order is lexicographic in ``(key, flat index)``, so ties are broken deterministically,
lower flat index removed first. For every unit the cut is found by two bisections, each step
one counting pass over the keys inside a ``lax.fori_loop`` (no host sync, static shapes):

1. on the key: the smallest ``t`` with ``#{key <= t} >= k`` (31 steps for float32 keys);
2. only if some unit's ties at ``t`` straddle the cut (``#{key <= t} > k``, checked inside a
   ``lax.cond``): the smallest flat index ``J`` with ``#{key < t} + #{key == t, idx <= J} >= k``.

Removed = ``key < t`` or ``(key == t and idx <= J)``: exactly ``k`` entries per unit. The cost
is about 31 (+ ``log2 n`` with straddling ties) counting passes over the keys, all units of all
leaves at once; on XLA:CPU that is several times faster than a full sort but slower than
numpy's introselect (figures in ``benchmarks/bench_sparsity.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from prune_jax.sparsity._checks import Scope
from prune_jax.sparsity._units import combine, flat_offsets, per_unit, row_index, unit_view

Array = jax.Array


def key_dtype(dtype: jnp.dtype) -> tuple[jnp.dtype, jnp.dtype]:
    """(float dtype in which magnitudes are ranked, integer dtype of its bit pattern)."""
    if jnp.finfo(dtype).bits > 32:
        return jnp.dtype(jnp.float64), jnp.dtype(jnp.int64)
    return jnp.dtype(jnp.float32), jnp.dtype(jnp.int32)


def magnitude_keys(w: Array, live: Array | None, float_dtype: jnp.dtype) -> Array:
    """Integer keys monotone in ``|w|``; ``-1`` where ``live`` is False (already pruned)."""
    int_dtype = key_dtype(float_dtype)[1]
    bits = lax.bitcast_convert_type(jnp.abs(w.astype(float_dtype)), int_dtype)
    return bits if live is None else jnp.where(live, bits, jnp.asarray(-1, int_dtype))


def _count(keys: Sequence[Array], scope: Scope,
           pred: Callable[[int, Array], Array]) -> list[Array]:
    """Per-unit number of entries where ``pred(leaf_index, keys)`` holds (int32)."""
    per_leaf = [per_unit(jnp.sum, pred(i, v), dtype=jnp.int32) for i, v in enumerate(keys)]
    return combine(per_leaf, scope, jnp.add)


Bracket = tuple[list[Array], list[Array], list[Array]]


def _bisect(count: Callable[[list[Array]], list[Array]], k: Sequence[Array],
            bracket: Bracket, steps: int) -> Bracket:
    """Shrink ``(lo, hi, count(hi))`` to ``hi`` = smallest ``t`` with ``count(t) >= k``.

    Needs ``count(lo) < k <= count(hi)`` per unit and ``2**steps >= hi - lo`` (static trip
    count). The count at ``hi`` is carried along, so the caller gets it without another pass.
    """
    def body(_: int, state: Bracket) -> Bracket:
        lo, hi, c_hi = state
        mid = [a + (b - a) // 2 for a, b in zip(lo, hi, strict=True)]
        c_mid = count(mid)
        ok = [c >= kk for c, kk in zip(c_mid, k, strict=True)]
        lo = [jnp.where(o, a, m) for o, a, m in zip(ok, lo, mid, strict=True)]
        hi = [jnp.where(o, m, b) for o, m, b in zip(ok, mid, hi, strict=True)]
        c_hi = [jnp.where(o, c, ch) for o, c, ch in zip(ok, c_mid, c_hi, strict=True)]
        return lo, hi, c_hi

    return lax.fori_loop(0, steps, body, bracket)


@partial(jax.jit, static_argnames=("offsets", "scope"))
def remove_smallest(keys: Sequence[Array], k: Sequence[Array], *,
                    offsets: tuple[int, ...], scope: Scope) -> list[Array]:
    """Boolean arrays shaped like ``keys``: True where an entry is among its unit's k smallest.

    ``keys``: per-leaf integer key views (``(m, u)`` or flat ``(m,)``, see ``_units``), all
    of one integer dtype; ``k``: per-leaf ``(u,)`` int32 counts, ``0 <= k <= unit size``;
    ``offsets``: row offset of each leaf in its unit's flat order. Ties are removed in
    ascending flat order. Keys above the largest finite float (NaN, Inf) are not supported.
    """
    int_dtype = keys[0].dtype
    float_dtype = jnp.float64 if jnp.iinfo(int_dtype).bits > 32 else jnp.float32
    max_finite = np.array(jnp.finfo(float_dtype).max, float_dtype).view(int_dtype)
    rows = [row_index(v, o) for v, o in zip(keys, offsets, strict=True)]
    sizes = combine([jnp.full(kk.shape, v.shape[0] + o, jnp.int32)
                     for v, o, kk in zip(keys, offsets, k, strict=True)], scope, jnp.maximum)

    # Stage 1: the k-th smallest key t of every unit.
    lo = [jnp.full(kk.shape, -2, int_dtype) for kk in k]
    hi = [jnp.full(kk.shape, max_finite, int_dtype) for kk in k]
    _, t, c_t = _bisect(lambda t: _count(keys, scope, lambda i, v: v <= t[i]), k,
                        (lo, hi, sizes), jnp.iinfo(int_dtype).bits - 1)

    # Stage 2, only where ties at t straddle the cut: the last flat index J removed among them.
    def tie_cut(_: None) -> list[Array]:
        def count(j: list[Array]) -> list[Array]:
            return _count(keys, scope,
                          lambda i, v: (v < t[i]) | ((v == t[i]) & (rows[i] <= j[i])))
        lo = [jnp.full(kk.shape, -1, jnp.int32) for kk in k]
        n_max = max(int(v.shape[0]) + o for v, o in zip(keys, offsets, strict=True))
        return _bisect(count, k, (lo, [s - 1 for s in sizes], c_t), max(n_max.bit_length(), 1))[1]

    straddle = jnp.any(jnp.stack([jnp.any(c > kk) for c, kk in zip(c_t, k, strict=True)]))
    cut = lax.cond(straddle, tie_cut, lambda _: [s - 1 for s in sizes], None)
    return [(kk > 0) & ((v < tt) | ((v == tt) & (r <= j)))
            for v, kk, tt, r, j in zip(keys, k, t, rows, cut, strict=True)]


@partial(jax.jit, static_argnames=("scope",))
def kept_after_removal(leaves: Sequence[Array], live: Sequence[Array] | None,
                       at_least: Sequence[Array], extra: Sequence[Array], *,
                       scope: Scope) -> list[Array]:
    """Keep-masks (leaf shapes) after removing the smallest magnitudes of every unit.

    Per unit, ``max(at_least, pruned + extra)`` entries are removed, where ``pruned`` counts the
    entries that are not ``live`` (already pruned; they rank below every magnitude, so they are
    removed first and stay removed). ``at_least`` and ``extra`` are per-leaf ``(u,)`` int32
    arrays (see ``_units``); magnitudes are ranked in float32 (float64 if any leaf is float64).
    """
    float_dtype = key_dtype(jnp.result_type(*leaves))[0]
    views = [unit_view(w, scope) for w in leaves]
    live_views = None if live is None else [unit_view(m, scope) for m in live]
    keys = [magnitude_keys(w, None if live_views is None else live_views[i], float_dtype)
            for i, w in enumerate(views)]
    if live_views is None:
        pruned = [jnp.zeros(a.shape, jnp.int32) for a in at_least]
    else:
        pruned = combine([per_unit(jnp.sum, ~m, dtype=jnp.int32) for m in live_views],
                         scope, jnp.add)
    k = [jnp.maximum(a, n + e) for a, n, e in zip(at_least, pruned, extra, strict=True)]
    removed = remove_smallest(keys, k, offsets=tuple(flat_offsets([w.shape for w in leaves],
                                                                   scope)), scope=scope)
    return [~r.reshape(w.shape) for r, w in zip(removed, leaves, strict=True)]
