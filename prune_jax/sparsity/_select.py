"""Exact "remove the k smallest" per scope unit, without a full sort (private; SPEC 3.2).

Magnitudes are ranked through their bit patterns: for non-negative IEEE floats the bit pattern
read as a signed integer is monotone in the value, so ``|w|`` becomes an integer *key*, and
already-pruned weights get key ``-1`` (below every magnitude: they are removed first). Keys
are compared as integers, never as floats, so subnormal magnitudes (which XLA:CPU flushes to
zero in float arithmetic) keep their order.

The order is lexicographic in ``(key, flat index)``, so ties are broken deterministically,
lower flat index removed first. The result of every unit is the pair ``(t, J)``: the key and
the flat index of its k-th smallest entry. Removed = ``key < t`` or ``(key == t and idx <=
J)``: exactly ``k`` entries per unit. Two exact algorithms compute it; they give identical
masks (``tests/sparsity/test_sp_masks.py`` checks both against a numpy lexsort oracle).

**Large flat units** (``"global"``, and ``"layer"`` leaves of at least ``fast_min`` entries,
2**17 by default; see :class:`Refinement`): bracket refinement with a bitmask capture
(:func:`_unit_cut`), a few passes over the weights in all:

1. a deterministic strided sample of ``sample`` (16384) keys is sorted;
2. each *pass* is one fused read of the weights (and mask). Over rows of 32 entries it
   counts ``#{key < b_j}`` for 4 thresholds at once (four 8-bit counters packed in one
   ``uint32``) and builds two 32-bit words, marking the entries of a *window* ``[b_1, b_2)``
   and those below it, all in one variadic row reduction (memory-bound: about one read of
   the weights). The first pass takes the largest finite key as its top threshold, so it
   also counts NaN/Inf magnitudes (the caller's finiteness check costs no read). The
   thresholds are sample keys: the window is placed around the sample position of the k-th
   key (interpolated in the exact counts) with a margin of several binomial standard
   deviations;
3. the exact counts give a bracket ``[lo, hi)`` of keys with ``#{key < lo} < k <= #{key <
   hi}``. If the k-th key is in the window and the window holds at most ``cap`` (32768)
   entries, or a single key value, it is *captured*. Otherwise the bracket shrinks to the
   threshold interval holding the k-th key; when that is the window (too large to capture),
   the sample is replaced by ``sample`` of its entries, picked at evenly spaced ranks from
   its bit words;
4. after capture, the window's entries are compacted from the bit words in flat order (the
   entry of rank r is found by descending a binary heap of popcounts) and ``t`` is found by
   bisection on their keys; ``J`` is then the entry of rank ``k - #{key < t}`` among those
   equal to ``t``. A window of one key value gives ``J`` directly from its bit words;
5. the removed set is then a bit word array, without another read of the weights: the
   capturing pass's below-window words, OR the window's removed entries (written back at
   their positions, or the window's words up to ``J`` for a one-key window). The masks are
   unpacked from it (a write of one byte per weight).

At 25M float32 weights that is 2 passes, about 8 ms of work on arrays of at most 10**6
entries and the unpacking (figures in ``benchmarks/RESULTS.md``). The passes are exact whatever
the data; the sample only steers the thresholds. Ties are windows of their own once the
sample shows them; when the sample is uninformative, after ``guided_passes`` passes the
thresholds split the key range into 5 equal parts, so at most about 14 more passes are made
(``max_passes`` is a safety bound). The loop is a ``lax.while_loop`` with static shapes.

**Small units** (``"neuron"``, small ``"layer"`` leaves): all units of all leaves at once, by
two bisections, each step one counting pass inside a ``lax.fori_loop``
(:func:`remove_smallest_bisect`):

1. on the key: the smallest ``t`` with ``#{key <= t} >= k`` (31 steps for float32 keys);
2. only if some unit's ties at ``t`` straddle the cut (``#{key <= t} > k``, checked inside a
   ``lax.cond``): the smallest flat index ``J`` with ``#{key < t} + #{key == t, idx <= J} >= k``.

Integer counts over flat views are row sums of 32 entries followed by a second reduction,
separated by an ``optimization_barrier``: XLA:CPU would otherwise merge them into one long
integer reduction, which it evaluates several times slower than the memory-bound float sum.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from prune_jax.sparsity._checks import Scope
from prune_jax.sparsity._units import combine, flat_offsets, per_unit, row_index, unit_view

Array = jax.Array

LANES = 32            # entries per row of a pass: one bitmask word
BLOCK = LANES * 32    # entries per block (32 words): every leaf fills whole blocks (tail padded)
Z_CAPTURE = 4.0       # a capture window spans at least this many standard deviations
Z_NARROW = 3.0        # otherwise the window (to be resampled) spans this many


class Refinement(NamedTuple):
    """Static parameters of the bracket refinement (hashable: a static ``jit`` argument).

    Every setting gives the same (exact) result; they only change the speed. Tests shrink
    them to reach every branch on small inputs.
    """

    fast_min: int = 1 << 17     # units at least this large take the bracket refinement
    sample: int = 16384         # sample size
    cap: int = 32768            # largest window compacted and searched (a multiple of 256)
    guided_passes: int = 8      # passes with sample-placed thresholds, then equal key splits
    max_passes: int = 48        # safety bound (never reached with finite keys)


DEFAULT = Refinement()


def key_dtype(dtype: jnp.dtype) -> tuple[jnp.dtype, jnp.dtype]:
    """(float dtype in which magnitudes are ranked, integer dtype of its bit pattern)."""
    if jnp.finfo(dtype).bits > 32:
        return jnp.dtype(jnp.float64), jnp.dtype(jnp.int64)
    return jnp.dtype(jnp.float32), jnp.dtype(jnp.int32)


def magnitude_keys(w: Array, live: Array | None, float_dtype: jnp.dtype) -> Array:
    """Integer keys monotone in ``|w|``; ``-1`` where ``live`` is False (already pruned).

    NaN and Inf keep their keys (above every finite magnitude) even where pruned, so that the
    refinement's first pass counts them (:func:`remove_smallest` reports them).
    """
    int_dtype = key_dtype(float_dtype)[1]
    bits = lax.bitcast_convert_type(jnp.abs(w.astype(float_dtype)), int_dtype)
    if live is None:
        return bits
    keep = live | (bits > jnp.asarray(_max_finite_key(int_dtype), int_dtype))
    return jnp.where(keep, bits, jnp.asarray(-1, int_dtype))


def _max_finite_key(int_dtype: jnp.dtype) -> int:
    """Key of the largest finite float of the matching float dtype."""
    float_dtype = jnp.float64 if jnp.iinfo(int_dtype).bits > 32 else jnp.float32
    return int(np.array(jnp.finfo(float_dtype).max, float_dtype).view(int_dtype))


def flat_count(pred: Callable[..., Array], *xs: Array) -> Array:
    """``sum(pred(*xs))`` of an elementwise boolean function of 1-D arrays of one length, as
    int32, at memory speed on XLA:CPU.

    Row sums of 32 entries, an ``optimization_barrier`` (so that XLA does not merge the two
    reductions into one long integer reduction), then the sum of the row sums and of the tail.
    ``pred`` is applied to the row view and to the tail separately (slicing one result would
    make XLA materialize it).
    """
    n = xs[0].shape[0]
    m = n // BLOCK * BLOCK   # a multiple of 32 rows (see _units.ROW_BLOCK)
    total = jnp.zeros((), jnp.int32)
    if m:
        view = pred(*(x[:m].reshape(-1, LANES) for x in xs))
        rows = jnp.sum(view, axis=1, dtype=jnp.int32)
        total = total + jnp.sum(lax.optimization_barrier(rows), dtype=jnp.int32)
    if n > m:
        total = total + jnp.sum(pred(*(x[m:] for x in xs)), dtype=jnp.int32)
    return total


def _count(keys: Sequence[Array], rows: Sequence[Array], scope: Scope,
           pred: Callable[[int, Array, Array], Array]) -> list[Array]:
    """Per-unit number of entries where ``pred(leaf_index, keys, rows)`` holds (int32);
    ``rows``: the flat position of every row of the view (:func:`~._units.row_index`)."""
    per_leaf = [flat_count(partial(pred, i), v, r).reshape(1) if v.ndim == 1
                else per_unit(jnp.sum, pred(i, v, r), dtype=jnp.int32)
                for i, (v, r) in enumerate(zip(keys, rows, strict=True))]
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
def remove_smallest_bisect(keys: Sequence[Array], k: Sequence[Array], *,
                           offsets: tuple[int, ...], scope: Scope) -> list[Array]:
    """Boolean arrays shaped like ``keys``: True where an entry is among its unit's k smallest.

    The bisection algorithm (module docstring), for any unit sizes. ``keys``: per-leaf
    integer key views (``(m, u)`` or flat ``(m,)``, see ``_units``), all of one integer dtype;
    ``k``: per-leaf ``(u,)`` int32 counts, ``0 <= k <= unit size``; ``offsets``: row offset
    of each leaf in its unit's flat order. Ties are removed in ascending flat order. Keys
    above the largest finite float (NaN, Inf) are not supported.
    """
    int_dtype = keys[0].dtype
    max_finite = np.asarray(_max_finite_key(int_dtype), int_dtype)
    rows = [row_index(v, o) for v, o in zip(keys, offsets, strict=True)]
    sizes = combine([jnp.full(kk.shape, v.shape[0] + o, jnp.int32)
                     for v, o, kk in zip(keys, offsets, k, strict=True)], scope, jnp.maximum)

    # Stage 1: the k-th smallest key t of every unit.
    lo = [jnp.full(kk.shape, -2, int_dtype) for kk in k]
    hi = [jnp.full(kk.shape, max_finite, int_dtype) for kk in k]
    _, t, c_t = _bisect(lambda t: _count(keys, rows, scope, lambda i, v, _: v <= t[i]), k,
                        (lo, hi, sizes), jnp.iinfo(int_dtype).bits - 1)

    # Stage 2, only where ties at t straddle the cut: the last flat index J removed among them.
    def tie_cut(_: None) -> list[Array]:
        def count(j: list[Array]) -> list[Array]:
            return _count(keys, rows, scope,
                          lambda i, v, r: (v < t[i]) | ((v == t[i]) & (r <= j[i])))
        lo = [jnp.full(kk.shape, -1, jnp.int32) for kk in k]
        n_max = max(int(v.shape[0]) + o for v, o in zip(keys, offsets, strict=True))
        return _bisect(count, k, (lo, [s - 1 for s in sizes], c_t), max(n_max.bit_length(), 1))[1]

    straddle = jnp.any(jnp.stack([jnp.any(c > kk) for c, kk in zip(c_t, k, strict=True)]))
    cut = lax.cond(straddle, tie_cut, lambda _: [s - 1 for s in sizes], None)
    return [(kk > 0) & ((v < tt) | ((v == tt) & (r <= j)))
            for v, kk, tt, r, j in zip(keys, k, t, rows, cut, strict=True)]


# ---------------------------------------------------------------------------------------------
# Bracket refinement for large flat units.


class _Layout(NamedTuple):
    """Static layout of one flat unit made of several leaves (jax.tree.leaves order).

    ``offsets``: flat index of each leaf's first entry in the unit; ``starts``: its position
    in the *padded* order of the bit words, where every leaf occupies whole ``BLOCK``s (the
    padding entries carry the largest key and are never counted or marked).
    """

    sizes: tuple[int, ...]
    offsets: tuple[int, ...]
    starts: tuple[int, ...]

    @staticmethod
    def of(sizes: Sequence[int]) -> _Layout:
        sizes = tuple(int(n) for n in sizes)
        blocks = [-(-n // BLOCK) for n in sizes]
        offsets = tuple(int(o) for o in np.concatenate([[0], np.cumsum(sizes)[:-1]]))
        starts = tuple(int(o) * BLOCK for o in np.concatenate([[0], np.cumsum(blocks)[:-1]]))
        return _Layout(sizes, offsets, starts)

    @property
    def total(self) -> int:
        return sum(self.sizes)


class _Leaves(NamedTuple):
    """The unit's flat weight leaves and masks, and how to turn them into keys."""

    weights: list[Array]
    live: list[Array | None]
    float_dtype: jnp.dtype
    layout: _Layout

    @property
    def int_dtype(self) -> jnp.dtype:
        return key_dtype(self.float_dtype)[1]

    def keys(self, i: int, index: slice | Array) -> Array:
        """Keys of leaf ``i`` at ``index`` (a slice or an integer array)."""
        live = self.live[i]
        return magnitude_keys(self.weights[i][index], None if live is None else live[index],
                              self.float_dtype)

    def keys_at(self, pos: Array) -> tuple[Array, Array]:
        """Keys and flat unit indices of entries at padded positions ``pos`` (int32).

        Positions outside every leaf (padding) get the padding key and index -1.
        """
        pad = jnp.asarray(jnp.iinfo(self.int_dtype).max, self.int_dtype)
        keys, flat = jnp.full(pos.shape, pad), jnp.full(pos.shape, -1, jnp.int32)
        for i, (n, off, start) in enumerate(zip(*self.layout, strict=True)):
            if n == 0:
                continue
            local = pos - start
            inside = (local >= 0) & (local < n)
            local = jnp.clip(local, 0, n - 1)
            keys = jnp.where(inside, self.keys(i, local), keys)
            flat = jnp.where(inside, local + off, flat)
        return keys, flat


def _row_stats(keys: Array, b: Array) -> tuple[Array, Array, Array]:
    """One pass over ``(rows, 32)`` keys: ``#{key < b_j}`` for the 4 thresholds ``b`` (int32
    ``(4,)``) and, per row, the bit words of the entries in the window ``[b_1, b_2)`` and of
    those below it (``key < b_1``; uint32 ``(rows,)`` each).

    Per entry, ``bucket = #{j: key >= b_j}``; the entry adds 1 to the 8-bit counters
    ``j >= bucket`` of one ``uint32`` (``0x01010101 << 8 * bucket``), so a row sum of 32
    entries holds 4 counts <= 32 without carries. The three row reductions are one variadic
    reduce.
    """
    bucket = sum((keys >= b[j]).astype(jnp.uint32) for j in range(4))
    packed = lax.shift_left(jnp.uint32(0x01010101), bucket * jnp.uint32(8))
    lane = lax.shift_left(jnp.uint32(1), lax.broadcasted_iota(jnp.uint32, (1, LANES), 1))
    zero = jnp.uint32(0)
    bits = jnp.where((keys >= b[1]) & (keys < b[2]), lane, zero)
    below = jnp.where(keys < b[1], lane, zero)
    row_counts, row_bits, row_below = lax.reduce(
        (packed, bits, below), (zero, zero, zero),
        lambda a, c: (a[0] + c[0], a[1] + c[1], a[2] + c[2]), (1,))
    row_counts, row_bits, row_below = lax.optimization_barrier((row_counts, row_bits, row_below))
    # Counters 0 and 2 (1 and 3) in the two 16-bit halves, summed over groups of 32 rows
    # (at most 1024 per half, so no carry), then the group sums.
    halves = jnp.uint32(0x00FF00FF)
    even = jnp.sum((row_counts & halves).reshape(-1, 32), axis=1, dtype=jnp.uint32)
    odd = jnp.sum(((row_counts >> 8) & halves).reshape(-1, 32), axis=1, dtype=jnp.uint32)
    even, odd = lax.optimization_barrier((even, odd))
    low, high = jnp.uint32(0xFFFF), jnp.uint32(16)
    return jnp.stack([jnp.sum(x, dtype=jnp.int32) for x in
                      (even & low, odd & low, even >> high, odd >> high)]), row_bits, row_below


def _pass(leaves: _Leaves, b: Array) -> tuple[Array, Array, Array]:
    """Counts ``#{key < b_j}`` over the unit (int32 ``(4,)``) and the bit words of the window
    ``[b_1, b_2)`` and of the entries below it, in padded order (uint32, ``BLOCK // 32`` words
    per block)."""
    pad = jnp.iinfo(leaves.int_dtype).max
    counts, words, below = jnp.zeros(4, jnp.int32), [], []
    for i, n in enumerate(leaves.layout.sizes):
        m = n // BLOCK * BLOCK
        parts = []
        if m:
            parts.append(leaves.keys(i, slice(0, m)).reshape(-1, LANES))
        if n > m:
            tail = jnp.pad(leaves.keys(i, slice(m, n)), (0, BLOCK - (n - m)),
                           constant_values=pad)
            parts.append(tail.reshape(-1, LANES))
        for keys in parts:
            c, w, lo = _row_stats(keys, b)
            counts = counts + c
            words.append(w)
            below.append(lo)
    return counts, jnp.concatenate(words), jnp.concatenate(below)


def _select_bits(words: Array, ranks: Array) -> Array:
    """Padded positions of the set bits of rank ``ranks`` (0-based, in bit order) in ``words``.

    The words (a multiple of 8) are grouped by 8. A binary heap of group popcounts (padded to
    a power of two; root at index 1, children of ``h`` at ``2h, 2h + 1``) is descended from
    the root in a ``fori_loop``, one gather per level; then the word inside the group (prefix
    of its 8 popcounts) and the bit inside the word (5 halving steps on popcounts). Ranks
    beyond the number of set bits give garbage positions (callers mask them).
    """
    group = 8
    rows = words.reshape(-1, group)              # the pass gives a multiple of 32 words
    depth = max(int(rows.shape[0] - 1).bit_length(), 0)
    levels = [jnp.pad(jnp.sum(lax.population_count(rows), axis=1, dtype=jnp.int32),
                      (0, (1 << depth) - rows.shape[0]))]
    for _ in range(depth):
        levels.append(jnp.sum(levels[-1].reshape(-1, 2), axis=1, dtype=jnp.int32))
    heap = jnp.concatenate([jnp.zeros(1, jnp.int32), *reversed(levels)])

    def down(_: int, state: tuple[Array, Array]) -> tuple[Array, Array]:
        node, rem = state
        left = heap.at[2 * node].get(mode="promise_in_bounds")
        up = (rem >= left).astype(jnp.int32)
        return 2 * node + up, rem - up * left

    node, rem = lax.fori_loop(0, depth, down, (jnp.ones(ranks.shape, jnp.int32), ranks))
    node = node - (1 << depth)
    row = rows.at[node].get(mode="clip")                                # (q, 8) words
    counts = [lax.population_count(row[:, j]).astype(jnp.int32) for j in range(group)]
    # The word is the last j whose exclusive prefix count is <= rem.
    word, before, prefix = row[:, 0], jnp.zeros_like(rem), jnp.zeros_like(rem)
    index = jnp.zeros_like(rem)
    for j in range(1, group):
        prefix = prefix + counts[j - 1]
        here = prefix <= rem
        word = jnp.where(here, row[:, j], word)
        before = jnp.where(here, prefix, before)
        index = jnp.where(here, j, index)
    rem = rem - before
    bit = jnp.zeros(ranks.shape, jnp.uint32)
    for s in (16, 8, 4, 2, 1):
        low = lax.population_count((word >> bit) & jnp.uint32((1 << s) - 1)).astype(jnp.int32)
        up = rem >= low
        rem = jnp.where(up, rem - low, rem)
        bit = jnp.where(up, bit + jnp.uint32(s), bit)
    return (node * group + index) * LANES + bit.astype(jnp.int32)


def _pack_bits(flags: Array) -> Array:
    """Bit words (uint32) of a boolean vector whose length is a multiple of 32."""
    lane = lax.broadcasted_iota(jnp.uint32, (1, LANES), 1)
    bits = jnp.where(flags.reshape(-1, LANES), lax.shift_left(jnp.uint32(1), lane), jnp.uint32(0))
    return jnp.sum(bits, axis=1, dtype=jnp.uint32)


def _initial_sample(leaves: _Leaves, size: int) -> Array:
    """Sorted keys at flat positions ``0, s, 2s, ...`` of the unit (``size`` entries; the
    stride ``s`` is static; unused entries carry the largest key and sort last)."""
    layout = leaves.layout
    stride = max(1, -(-layout.total // size))
    parts = []
    for i, (n, off) in enumerate(zip(layout.sizes, layout.offsets, strict=True)):
        first = (-off) % stride
        if first < n:
            parts.append(leaves.keys(i, slice(first, n, stride)))
    sample = jnp.concatenate(parts)
    pad = jnp.iinfo(leaves.int_dtype).max
    sample = jnp.pad(sample, (0, size - sample.shape[0]), constant_values=pad)
    return jnp.sort(sample)


def _resample(leaves: _Leaves, words: Array, size: Array, points: int) -> Array:
    """Sorted keys of ``points`` entries of a window (its bit ``words``, ``size`` entries),
    at evenly spaced ranks in flat order."""
    j = jnp.arange(points, dtype=jnp.float32)
    ranks = jnp.floor((j + 0.5) * (size.astype(jnp.float32) / points)).astype(jnp.int32)
    ranks = jnp.clip(ranks, 0, size - 1)
    return jnp.sort(leaves.keys_at(_select_bits(words, ranks))[0])


def _thresholds(sample: Array, lo: Array, hi: Array, c_lo: Array, c_hi: Array, k: Array,
                guided: Array, cap: int) -> Array:
    """4 sorted thresholds in ``[lo, hi]`` for the next pass (window ``[b_1, b_2)``).

    A bracket of at most ``cap`` entries is its own window. Otherwise, if ``guided`` and the
    sample has points in the bracket, thresholds are sample keys around the sample position
    of the k-th key (linear in the exact counts at the bracket ends): a window of about
    ``cap`` entries if that spans ``Z_CAPTURE`` binomial standard deviations, else one of
    ``Z_NARROW`` standard deviations (to be resampled), and outer thresholds twice as far. A
    tie that the sample puts entirely below the k-th key is left out of the window; a tie
    around it that the sample estimates at ``cap / 4`` entries or more is made the window by
    itself (its own key value). Otherwise the key range is split in 5 equal parts (a bracket of
    one key value is its own window), which bounds the number of passes.
    """
    last = sample.shape[0] - 1
    i_lo = jnp.sum(sample < lo, dtype=jnp.int32)
    i_hi = jnp.sum(sample < hi, dtype=jnp.int32)
    points = (i_hi - i_lo).astype(jnp.float32)
    size = (c_hi - c_lo).astype(jnp.float32)
    q = jnp.clip(((k - c_lo).astype(jnp.float32) - 0.5) / size, 0.0, 1.0)
    pos = i_lo.astype(jnp.float32) + q * points
    sd = jnp.sqrt(points * q * (1.0 - q)) + 1.0
    per_point = size / jnp.maximum(points, 1.0)
    h_cap = 0.45 * cap / per_point
    h_in = jnp.where(h_cap >= Z_CAPTURE * sd, h_cap, Z_NARROW * sd)
    h_out = 2.0 * h_in + 2.0

    def at(j: Array) -> Array:
        return sample[jnp.clip(j, 0, last).astype(jnp.int32)]

    def tie_end(v: Array) -> Array:
        return jnp.searchsorted(sample, v, side="right").astype(jnp.int32)

    def below(h: Array) -> Array:
        j = jnp.floor(pos - h)
        v = at(j)
        v = jnp.where(tie_end(v) <= jnp.floor(pos), v + 1, v)   # its tie ends below pos
        return jnp.where(j <= i_lo, lo, v)

    def above(h: Array) -> Array:
        j = jnp.ceil(pos + h)
        return jnp.where(j >= i_hi, hi, at(j))

    v = at(jnp.clip(jnp.floor(pos), i_lo, jnp.maximum(i_hi - 1, i_lo)))
    ties = tie_end(v) - jnp.searchsorted(sample, v, side="left").astype(jnp.int32)
    heavy = (ties >= 2) & (ties.astype(jnp.float32) * per_point >= cap / 4)
    w_lo = below(h_in)
    w_hi = jnp.maximum(above(h_in), w_lo)
    normal = jnp.stack([jnp.minimum(below(h_out), w_lo), w_lo, w_hi,
                        jnp.maximum(above(h_out), w_hi)])
    tie = jnp.stack([jnp.minimum(w_lo, v), v, v + 1, jnp.maximum(w_hi, v + 1)])
    sampled = jnp.where(heavy, tie, normal)

    width = hi - lo
    step = jnp.maximum(width // 5, 1)
    split = jnp.minimum(lo + step * jnp.arange(1, 5, dtype=lo.dtype), hi)
    whole = jnp.stack([lo, lo, hi, hi])
    split = jnp.where(width == 1, whole, split)
    use_sample = guided & (i_hi - i_lo >= 8)
    return jnp.where(c_hi - c_lo <= cap, whole, jnp.where(use_sample, sampled, split))


class _Refine(NamedTuple):
    """State of the refinement loop (see :func:`_unit_cut`)."""

    passes: Array
    lo: Array
    hi: Array
    c_lo: Array
    c_hi: Array
    sample: Array
    words: Array      # bit words of the window of the last pass
    below: Array      # bit words of the entries below that window
    window: Array     # (2,) keys [b_1, b_2) of the last pass
    c_window: Array   # (2,) counts below them
    captured: Array
    nonfinite: Array  # entries with NaN/Inf magnitudes (counted by the first pass)


class _Cut(NamedTuple):
    """Result of :func:`_unit_cut` for one large flat unit."""

    t: Array          # key of the k-th smallest entry
    cut: Array        # its flat index
    passes: Array     # passes over the weights made
    removed: Array    # bit words (padded order) of the k smallest entries
    nonfinite: Array  # number of NaN/Inf entries (0 unless the input is bad)


def _prefix_words(words: Array, pos: Array) -> Array:
    """``words`` with every bit after padded position ``pos`` cleared."""
    index = lax.iota(jnp.int32, words.shape[0])
    last = words & (jnp.uint32(0xFFFFFFFF) >> (31 - (pos & 31)).astype(jnp.uint32))
    return jnp.where(index < pos >> 5, words, jnp.where(index == pos >> 5, last, jnp.uint32(0)))


def _unit_cut(leaves: _Leaves, k: Array, cfg: Refinement) -> _Cut:
    """The k smallest entries of one large flat unit (``1 <= k <= size``; module docstring).

    The first pass counts below the largest finite key as its upper threshold, so entries with
    NaN/Inf magnitudes are counted without another read; the loop stops there if any exist
    (the result is then meaningless and the caller raises).
    """
    int_dtype = leaves.int_dtype
    top = jnp.asarray(_max_finite_key(int_dtype) + 1, int_dtype)
    total = jnp.int32(leaves.layout.total)
    n_words = sum(-(-n // BLOCK) for n in leaves.layout.sizes) * (BLOCK // LANES)

    def body(s: _Refine) -> _Refine:
        b = _thresholds(s.sample, s.lo, s.hi, s.c_lo, s.c_hi, k,
                        s.passes < cfg.guided_passes, cfg.cap)
        first = s.passes == 0
        b = jnp.where(first & (lax.iota(jnp.int32, 4) == 3), top, b)
        # Tie the weights to the loop state: XLA would otherwise hoist the (loop-invariant)
        # key computation out of the loop and materialize all keys once, an extra write.
        weights, live, _ = lax.optimization_barrier((leaves.weights, leaves.live, s.passes))
        c, words, below = _pass(leaves._replace(weights=weights, live=live), b)
        nonfinite = jnp.where(first, total - c[3], s.nonfinite)
        edges = jnp.stack([s.lo, b[0], b[1], b[2], b[3], s.hi])
        counts = jnp.stack([s.c_lo, c[0], c[1], c[2], c[3], s.c_hi])
        i = jnp.sum(counts[1:5] < k, dtype=jnp.int32)
        in_window = (c[1] < k) & (k <= c[2])
        captured = in_window & ((c[2] - c[1] <= cfg.cap) | (b[2] - b[1] == 1))
        sample = lax.cond(in_window & ~captured & (nonfinite == 0),
                          lambda: _resample(leaves, words, c[2] - c[1], cfg.sample),
                          lambda: s.sample)
        return _Refine(s.passes + 1, edges[i], edges[i + 1], counts[i], counts[i + 1], sample,
                       words, below, b[1:3], c[1:3], captured, nonfinite)

    empty = jnp.zeros(n_words, jnp.uint32)
    start = _Refine(jnp.int32(0), jnp.asarray(-1, int_dtype), top, jnp.int32(0), total,
                    _initial_sample(leaves, cfg.sample), empty, empty, jnp.stack([top, top]),
                    jnp.zeros(2, jnp.int32), jnp.asarray(False), jnp.int32(0))
    s = lax.while_loop(lambda s: ~s.captured & (s.passes < cfg.max_passes) & (s.nonfinite == 0),
                       body, start)
    rank = k - 1 - s.c_window[0]
    size = s.c_window[1] - s.c_window[0]

    def compact() -> tuple[Array, Array, Array]:
        slots = jnp.arange(cfg.cap, dtype=jnp.int32)
        pos = _select_bits(s.words, slots)
        keys, flat = leaves.keys_at(pos)   # in flat order
        keys = jnp.where(slots < size, keys, jnp.iinfo(int_dtype).max)
        # t: the smallest key with #{key <= t} > rank, by bisection on [b_1, b_2) (cheaper
        # than sorting the buffer on XLA:CPU).
        def halve(state: tuple[Array, Array]) -> tuple[Array, Array]:
            lo, hi = state
            mid = lo + (hi - lo) // 2
            enough = flat_count(lambda v: v <= mid, keys) > rank
            return jnp.where(enough, lo, mid), jnp.where(enough, mid, hi)

        _, t = lax.while_loop(lambda st: st[1] - st[0] > 1, halve,
                              (s.window[0] - 1, s.window[1] - 1))
        # Among the window's entries equal to t (in flat order), the one of rank
        # rank - #{key < t} is the last removed.
        tie_rank = rank - flat_count(lambda v: v < t, keys)
        cut = flat[_select_bits(_pack_bits(keys == t), tie_rank.reshape(1))[0]]
        # The window's removed entries, written back into bit words at their positions.
        gone = (slots < size) & ((keys < t) | ((keys == t) & (flat <= cut)))
        bits = jnp.where(gone, lax.shift_left(jnp.uint32(1), (pos & 31).astype(jnp.uint32)),
                         jnp.uint32(0))
        removed = jnp.zeros(n_words, jnp.uint32).at[pos >> 5].add(bits, mode="drop")
        return t, cut, removed

    def one_key() -> tuple[Array, Array, Array]:
        pos = _select_bits(s.words, rank.reshape(1))[0]
        _, flat = leaves.keys_at(pos.reshape(1))
        return s.window[0], flat[0], _prefix_words(s.words, pos)

    t, cut, removed = lax.cond(size <= cfg.cap, compact, one_key)
    return _Cut(t, cut, s.passes, s.below | removed, s.nonfinite)


@partial(jax.jit, static_argnames=("float_dtype", "config"))
def refine_cut(weights: Sequence[Array], live: Sequence[Array | None] | None, k: Array, *,
               float_dtype: jnp.dtype, config: Refinement = DEFAULT
               ) -> tuple[Array, Array, Array]:
    """``(t, J, passes)`` of the flat unit made of the 1-D ``weights`` (and ``live`` masks):
    key and flat index of its k-th smallest entry, and the number of passes (for tests and
    benchmarks; ``1 <= k <= size``)."""
    live = [None] * len(weights) if live is None else list(live)
    leaves = _Leaves(list(weights), live, float_dtype, _Layout.of([w.shape[0] for w in weights]))
    cut = _unit_cut(leaves, jnp.maximum(k, 1), config)
    return cut.t, cut.cut, cut.passes


def _unpack(words: Array, layout: _Layout) -> list[Array]:
    """Boolean flat leaves from bit words in padded order (the padding is dropped)."""
    lane = lax.broadcasted_iota(jnp.uint32, (1, LANES), 1)
    out = []
    for n, start in zip(layout.sizes, layout.starts, strict=True):
        first = start // LANES
        span = -(-n // BLOCK) * (BLOCK // LANES)
        bits = (words[first:first + span, None] >> lane) & jnp.uint32(1)
        out.append(bits.astype(bool).reshape(-1)[:n])
    return out


def _removed_flat(leaves: _Leaves, k: Array, cfg: Refinement) -> tuple[list[Array], Array]:
    """Removed-masks of the flat leaves of one large unit (k smallest, ties by flat index),
    and whether all its magnitudes are finite."""
    cut = _unit_cut(leaves, jnp.maximum(k, 1), cfg)
    removed = jnp.where(k > 0, cut.removed, jnp.uint32(0))
    return _unpack(removed, leaves.layout), cut.nonfinite == 0


def _all_finite(weights: Sequence[Array], float_dtype: jnp.dtype) -> Array:
    """True when no entry of ``weights`` has a NaN/Inf magnitude (one counting read each)."""
    int_dtype = key_dtype(float_dtype)[1]
    top = jnp.asarray(_max_finite_key(int_dtype), int_dtype)
    bad = [flat_count(lambda v: magnitude_keys(v, None, float_dtype) > top, w.reshape(-1))
           for w in weights]
    return functools.reduce(jnp.add, bad, jnp.int32(0)) == 0


@partial(jax.jit, static_argnames=("scope", "float_dtype", "config"))
def remove_smallest(weights: Sequence[Array], live: Sequence[Array] | None,
                    k: Sequence[Array], *, scope: Scope, float_dtype: jnp.dtype,
                    config: Refinement = DEFAULT) -> tuple[list[Array], Array]:
    """Boolean arrays shaped like the unit views: True where an entry is among its unit's k
    smallest ``(key, flat index)``; and a scalar, True when every magnitude is finite.

    ``weights``/``live``: per-leaf unit views (``_units.unit_view``) of the parameters and of
    the current keep-mask (``None``: nothing pruned yet); ``k``: per-leaf ``(u,)`` int32
    counts, ``0 <= k <= unit size``. Units of at least ``config.fast_min`` entries under
    ``"global"`` and ``"layer"`` take the bracket refinement, the others the bisection
    (module docstring); both are exact, so the result does not depend on ``config``. With NaN
    or Inf weights (including pruned ones) the flag is False and the masks are meaningless.
    """
    n_leaves = len(weights)
    lives = [None] * n_leaves if live is None else list(live)
    sizes = [int(np.prod(w.shape, dtype=np.int64)) for w in weights]
    if scope == "global" and sum(sizes) >= config.fast_min:
        leaves = _Leaves(list(weights), lives, float_dtype, _Layout.of(sizes))
        return _removed_flat(leaves, k[0][0], config)
    out: list[Array | None] = [None] * n_leaves
    finite = jnp.asarray(True)
    fast = [i for i in range(n_leaves) if scope == "layer" and sizes[i] >= config.fast_min]
    for i in fast:
        leaves = _Leaves([weights[i]], [lives[i]], float_dtype, _Layout.of([sizes[i]]))
        removed, ok = _removed_flat(leaves, k[i][0], config)
        out[i], finite = removed[0], finite & ok
    rest = [i for i in range(n_leaves) if i not in fast]
    if rest:
        keys = [magnitude_keys(weights[i], lives[i], float_dtype) for i in rest]
        offsets = flat_offsets([w.shape for w in weights], scope)
        removed = remove_smallest_bisect(keys, [k[i] for i in rest],
                                         offsets=tuple(offsets[i] for i in rest), scope=scope)
        for i, r in zip(rest, removed, strict=True):
            out[i] = r
        finite = finite & _all_finite([weights[i] for i in rest], float_dtype)
    return out, finite


@partial(jax.jit, static_argnames=("scope", "config"))
def kept_after_removal(leaves: Sequence[Array], live: Sequence[Array] | None,
                       at_least: Sequence[Array], extra: Sequence[Array], *,
                       scope: Scope, config: Refinement = DEFAULT) -> tuple[list[Array], Array]:
    """Keep-masks (leaf shapes) after removing the smallest magnitudes of every unit, and a
    scalar flag, True when every weight of ``leaves`` is finite.

    Per unit, ``max(at_least, pruned + extra)`` entries are removed, where ``pruned`` counts the
    entries that are not ``live`` (already pruned; they rank below every magnitude, so they are
    removed first and stay removed). ``at_least`` and ``extra`` are per-leaf ``(u,)`` int32
    arrays (see ``_units``); magnitudes are ranked in float32 (float64 if any leaf is float64).
    ``config``: parameters of the selection (:class:`Refinement`; the result does not depend
    on them). The finiteness flag costs no extra read on the refinement path (its first pass
    counts NaN/Inf); when it is False the masks are meaningless and callers raise.
    """
    float_dtype = key_dtype(jnp.result_type(*leaves))[0]
    views = [unit_view(w, scope) for w in leaves]
    live_views = None if live is None else [unit_view(m, scope) for m in live]
    if live_views is None:
        pruned = [jnp.zeros(a.shape, jnp.int32) for a in at_least]
    else:
        pruned = combine([flat_count(jnp.logical_not, m).reshape(1) if m.ndim == 1
                          else per_unit(jnp.sum, ~m, dtype=jnp.int32) for m in live_views],
                         scope, jnp.add)
    k = [jnp.maximum(a, n + e) for a, n, e in zip(at_least, pruned, extra, strict=True)]
    removed, finite = remove_smallest(views, live_views, k, scope=scope,
                                      float_dtype=float_dtype, config=config)
    # The barrier keeps the (free) reshape out of the unpacking fusion: fused, XLA:CPU maps
    # every output element of e.g. a (rows, 500) kernel back to its flat bit, 2x slower.
    return [~r.reshape(w.shape) for r, w in zip(removed, leaves, strict=True)], finite
