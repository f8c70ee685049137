"""Sparsity measures: PQ Index, Gini index and the PQI bound on retained weights (SPEC 3.1-3.2).

The PQ Index of a non-zero ``w`` in R^d, for ``0 < p <= 1 <= q`` and ``p < q``, is (seed paper,
Definition 1 / eq. 1)::

    I_pq(w) = 1 - d^(1/q - 1/p) ||w||_p / ||w||_q = 1 - M_p(|w|) / M_q(|w|),

where ``M_r(a) = (mean_i a_i^r)^(1/r)`` is the power mean: the ``d`` factors are absorbed into
means, so nothing of size ``d^(1/q - 1/p)`` is ever formed, and the ratio is taken in logs.
Where raw powers could overflow or underflow, magnitudes are scaled by the power of two just
above ``max |w|`` (exact; every term in ``[0, 1)``), so huge and tiny magnitudes and ``d`` up
to 1e8 and beyond stay finite. ``I`` lies in ``[0, 1 - d^(1/q - 1/p)]`` and grows with
sparsity (Theorem 1).

The PQI bound (Theorem 2, eq. 2) on the number ``r`` of largest weights that hold all but a
fraction ``eta`` of the ``l_p`` mass, ``r >= d (1 + eta)^(-q/(q-p)) [1 - I(w)]^(qp/(q-p))``,
is evaluated in float64: per-unit power sums reduced in float64, the formula in numpy.
"""

from __future__ import annotations

from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from prune_jax.sparsity._checks import (
    Scope,
    check_pq,
    check_real,
    is_concrete,
)
from prune_jax.sparsity._units import (
    Lanes,
    combine,
    lane_layout,
    lane_sums,
    per_unit,
    unit_view,
    units_per_leaf,
)
from prune_jax.tree import (
    PyTree,
    check_finite,
    check_floating,
    check_same_structure,
    on_auto_mesh,
    to_host,
)

Array = jax.Array

__all__ = [
    "PQStats",
    "PowerSums",
    "gini_index",
    "pq_index",
    "pq_stats_from_sums",
    "pqi_retained_bound",
    "unit_power_sums",
    "unit_power_sums_f64",
]


class PowerSums(NamedTuple):
    """Per-unit sufficient statistics of the PQ Index (one ``(u,)`` array per leaf).

    ``s_r = sum_i (|w_i| / 2^e)^r`` over the live weights of the unit, where ``2^e`` is the
    power of two just above ``scale = max |w_i|`` (so every term is in ``[0, 1)``), and
    ``d`` = number of live weights. Ratios of power means do not depend on ``e``.
    """

    d: list[Array]
    scale: list[Array]
    s_p: list[Array]
    s_q: list[Array]


def _power(a: Array, e: float) -> Array:
    """``a ** e`` for ``a >= 0``, with the common exponents as cheap exact special cases."""
    if e == 1.0:
        return a
    if e == 2.0:
        return a * a
    if e == 0.5:
        return jnp.sqrt(a)
    return a**e


def _scale_down(a: Array, top: Array) -> Array:
    """``a / 2^e`` with ``2^(e-1) <= top < 2^e``: exact, and every result in ``[0, 1)``.

    The power of two is applied as two normal factors, because XLA may turn ``a / top`` into
    ``a * (1 / top)`` and ``1 / top`` is subnormal (flushed to 0 on CPU) for ``top > 2^126``.
    """
    _, e = jnp.frexp(top)
    half = e // 2
    one = jnp.ones((), a.dtype)
    return a * jnp.ldexp(one, -half) * jnp.ldexp(one, half - e)


def _compute_dtype(leaves: list[Array]) -> jnp.dtype:
    return jnp.promote_types(jnp.result_type(*leaves), jnp.float32)


@partial(jax.jit, static_argnames=("p", "q", "scope"))
def unit_power_sums(leaves: list[Array], live: list[Array] | None, *,
                    p: float, q: float, scope: Scope) -> PowerSums:
    """Power sums of the live weights of every scope unit (jitted core of SPEC 3.1-3.2).

    ``live`` (same shapes as ``leaves``, True = live) restricts every statistic to the live
    weights; ``None`` means all weights are live. Magnitudes are scaled by a power of two
    (exact) so that no power overflows or underflows.
    """
    dtype = _compute_dtype(leaves)

    def magnitudes(ws: list[Array]) -> list[Array]:
        mags = [unit_view(jnp.abs(w.astype(dtype)), scope) for w in ws]
        if live is None:
            return mags
        return [jnp.where(unit_view(m, scope), a, jnp.zeros((), dtype))
                for m, a in zip(live, mags, strict=True)]

    if live is None:
        units = [units_per_leaf(w.shape, scope) for w in leaves]
        d = combine([jnp.full((u,), w.size // u, jnp.int32)
                     for w, u in zip(leaves, units, strict=True)], scope, jnp.add)
    else:
        d = combine([per_unit(jnp.sum, unit_view(m, scope), dtype=jnp.int32) for m in live],
                    scope, jnp.add)
    scale = combine([per_unit(jnp.max, a) for a in magnitudes(leaves)], scope, jnp.maximum)

    def power_sums(e: float) -> list[Array]:
        # XLA:CPU fuses reductions that share an input into one multi-output loop, several
        # times slower than separate vectorised ones; a barrier on the raw leaves prevents it.
        mags = magnitudes(lax.optimization_barrier(leaves))
        return combine([per_unit(jnp.sum, _power(_scale_down(a, t), e))
                        for a, t in zip(mags, scale, strict=True)], scope, jnp.add)

    s_p, s_q = power_sums(p), power_sums(q)
    return PowerSums(d=d, scale=scale, s_p=s_p, s_q=s_q)


def _log_mean_ratio(d: Array, s_p: Array, s_q: Array, p: float, q: float) -> Array:
    """``log(M_p / M_q) = log(1 - I_pq)`` from power sums (works for jnp and numpy arrays)."""
    xp = jnp if isinstance(d, jax.Array) else np
    n = d.astype(s_p.dtype)
    return xp.log(s_p / n) / p - xp.log(s_q / n) / q


def _raw_power_sums(leaves: list[Array], p: float, q: float, layouts: tuple[Lanes, ...]
                    ) -> tuple[Array, Array]:
    """``(sum |w|^p, sum |w|^q)`` over all leaves, unscaled: one fused read per leaf."""
    dtype = _compute_dtype(leaves)
    s_p, s_q = jnp.zeros((), dtype), jnp.zeros((), dtype)
    for w, layout in zip(leaves, layouts, strict=True):
        def powers(v: Array) -> tuple[Array, Array]:
            a = jnp.abs(v.astype(dtype))
            return _power(a, p), _power(a, q)

        leaf_p, leaf_q = lane_sums(w, powers, layout)
        s_p, s_q = s_p + leaf_p, s_q + leaf_q
    return s_p, s_q


def _index_from_sums(d: Array, s_p: Array, s_q: Array, p: float, q: float) -> Array:
    """PQ Index from power sums (NaN for the zero vector)."""
    index = jnp.maximum(0.0 - jnp.expm1(_log_mean_ratio(d, s_p, s_q, p, q)), 0.0)
    return jnp.where(s_q > 0, index, jnp.nan)


@partial(jax.jit, static_argnames=("p", "q", "layouts", "fallback"))
def _pq_index_core(leaves: list[Array], d: Array, *, p: float, q: float,
                   layouts: tuple[Lanes, ...], fallback: bool = True
                   ) -> tuple[Array, Array, Array, Array]:
    """PQ Index of all leaves taken as one vector: ``(index, s_p, s_q, exact)`` (jitted core).

    ``layouts``: per leaf, how its sums may view it (``_units.lane_layout``, static).

    Fast path: unscaled power sums, one fused read of the data (``_units.lane_sums``). They
    are exact enough (``exact`` is True) unless a power overflowed or the sums are so small
    that flushed subnormal terms could matter (``s < d * tiny / eps``). Then, with
    ``fallback``, the sums are recomputed inside a ``lax.cond`` from magnitudes scaled by a
    power of two (:func:`_pq_index_scaled`). Without it, the caller does that on the host
    when ``exact`` is False: a ``lax.cond`` whose branch reads the weights made every call
    about 4 ms slower at 25M weights on XLA:CPU, even when the branch is not taken.
    ``index`` is NaN for the zero vector; ``s_p, s_q`` are non-finite iff the input holds NaN
    or Inf.
    """
    dtype = _compute_dtype(leaves)
    raw = _raw_power_sums(leaves, p, q, layouts)
    info = jnp.finfo(dtype)
    small = d.astype(dtype) * float(info.tiny) / float(info.eps)
    exact = jnp.isfinite(raw[0] + raw[1]) & (raw[0] > small) & (raw[1] > small)
    s_p, s_q = raw
    if fallback:
        s_p, s_q = lax.cond(exact, lambda _: raw, lambda _: _scaled_sums(leaves, p, q), None)
    return _index_from_sums(d, s_p, s_q, p, q), s_p, s_q, exact


def _scaled_sums(leaves: list[Array], p: float, q: float) -> tuple[Array, Array]:
    """Power sums of all leaves from magnitudes scaled by a power of two (never overflow)."""
    sums = unit_power_sums(leaves, None, p=p, q=q, scope="global")
    return sums.s_p[0][0], sums.s_q[0][0]


@partial(jax.jit, static_argnames=("p", "q"))
def _pq_index_scaled(leaves: list[Array], d: Array, *, p: float, q: float
                     ) -> tuple[Array, Array, Array]:
    """``(index, s_p, s_q)`` from scaled power sums: the fallback of :func:`_pq_index_core`."""
    s_p, s_q = _scaled_sums(leaves, p, q)
    return _index_from_sums(d, s_p, s_q, p, q), s_p, s_q


def _leaves_of(x: PyTree, name: str) -> list[Array]:
    """Leaves of ``x`` as arrays; dtype checked here, values by :func:`_raise_on_bad_sums`."""
    leaves = [jnp.asarray(leaf) for leaf in jax.tree.leaves(x)]
    if not leaves:
        raise ValueError(f"{name} has no array leaves")
    check_floating(leaves, name)
    return leaves


def _raise_on_bad_sums(s_p: Array | np.ndarray, s_q: Array | np.ndarray, x: PyTree,
                       name: str) -> None:
    """Host check on the reductions themselves (no extra pass): NaN/Inf and the zero vector.

    NaN/Inf errors name the first bad leaf (one more pass, on the error path only).

    ``s_p, s_q`` are global reductions, so only two scalars come to the host; they are
    fetched with :func:`prune_jax.tree.to_host`, which also works when ``x`` is a multi-host
    array that no single process can read.
    """
    if not is_concrete(x):
        return
    s = to_host((s_p, s_q))
    if not np.isfinite(s[0] + s[1]):
        check_finite(x, name)  # error path only: a leaf-wise pass that names the bad leaf
        raise ValueError(f"{name} contains NaN or Inf")
    if s[1] == 0:
        raise ValueError(f"{name} is the zero vector; its PQ Index is undefined (SPEC 3.1)")


def _masked_leaves(x: PyTree, mask: PyTree | None, leaves: list[Array]
                   ) -> tuple[list[Array], Array]:
    """Leaves with masked-out entries zeroed, and the number ``d`` of entries kept."""
    if mask is None:
        return leaves, jnp.asarray(sum(w.size for w in leaves), jnp.int32)
    check_same_structure(x, mask, "x", "mask")
    m = [jnp.asarray(v, bool) for v in jax.tree.leaves(mask)]
    kept = [jnp.where(mi, w, jnp.zeros((), w.dtype)) for mi, w in zip(m, leaves, strict=True)]
    return kept, sum(jnp.sum(mi, dtype=jnp.int32) for mi in m)


@on_auto_mesh
def pq_index(x: PyTree, p: float = 0.5, q: float = 1.0, *, mask: PyTree | None = None
             ) -> Array:
    """PQ Index ``I_pq(x) = 1 - d^(1/q-1/p) ||x||_p / ||x||_q`` (SPEC 3.1, seed eq. 1).

    Args:
      x: an array, or a pytree whose leaves are taken together as one flat vector (``d`` =
        total size). Floating point; NaN/Inf or the all-zero vector raise ``ValueError``.
      p, q: exponents with ``0 < p <= 1 <= q`` and ``p < q`` (``ValueError`` naming p or q).
      mask: optional boolean pytree like ``x`` (True = live): the index of the live entries
        only (``d`` = number of live entries), as SAP measures a pruned model. Shapes stay
        static, so a changing mask does not recompile.

    Returns:
      A scalar array in ``[0, 1 - d^(1/q-1/p)]``: 0 for a constant vector, the upper end for a
      one-hot vector; larger means sparser. Computed in float32 (float64 for float64 input)
      in logs; magnitudes are rescaled by a power of two when raw powers would overflow or
      underflow. Subnormal inputs (below ~1.2e-38 in float32) count as 0 where XLA flushes
      denormals, as XLA:CPU does. Under an outer ``jit`` the value checks cannot run, and a
      zero vector (or NaN input) gives NaN.

    Example:
      A constant vector has index 0; a one-hot vector in R^d reaches the upper end
      ``1 - d^(1/q-1/p)`` (here ``d = 4``: 0.75 for (p, q) = (0.5, 1), 0.5 for (1, 2)):

      >>> import jax.numpy as jnp
      >>> import prune_jax as pj
      >>> round(float(pj.pq_index(jnp.ones(4))), 4)
      0.0
      >>> onehot = jnp.array([0.0, 0.0, 3.0, 0.0])
      >>> round(float(pj.pq_index(onehot, p=0.5, q=1.0)), 4), round(1 - 4 ** (1 - 1 / 0.5), 4)
      (0.75, 0.75)
      >>> round(float(pj.pq_index(onehot, p=1.0, q=2.0)), 4), round(1 - 4 ** (1 / 2 - 1), 4)
      (0.5, 0.5)
      >>> live = jnp.array([True, True, False, False])   # only the live entries count
      >>> round(float(pj.pq_index(jnp.array([2.0, 2.0, 5.0, 9.0]), mask=live)), 4)
      0.0
    """
    p, q = check_pq(p, q)
    leaves, d = _masked_leaves(x, mask, _leaves_of(x, "x"))
    layouts = tuple(lane_layout(w) for w in leaves)
    if not is_concrete(x):
        return _pq_index_core(leaves, d, p=p, q=q, layouts=layouts)[0]
    index, s_p, s_q, exact = _pq_index_core(leaves, d, p=p, q=q, layouts=layouts,
                                            fallback=False)
    exact, sums = to_host((exact, (s_p, s_q)))   # one transfer; also the checks' input
    if not exact:  # overflow, underflow risk, or NaN/Inf: the scaled sums decide
        index, s_p, s_q = _pq_index_scaled(leaves, d, p=p, q=q)
        sums = (s_p, s_q)
    _raise_on_bad_sums(*sums, x, "x")
    return index


@jax.jit
def _gini_core(flat: Array, n_live: Array) -> Array:
    # Masked-out entries are zeros sorted first; they add nothing to the sum, so the live
    # entries' ranks k - n_dead give (n_live - (k - n_dead) + 1/2) = (n - k + 1/2).
    c = jnp.sort(jnp.abs(flat))
    n = c.shape[0]
    k = jnp.arange(1, n + 1, dtype=c.dtype)
    return 1.0 - 2.0 * jnp.sum((c / jnp.sum(c)) * ((n - k + 0.5) / n_live.astype(c.dtype)))


@on_auto_mesh
def gini_index(x: PyTree, *, mask: PyTree | None = None) -> Array:
    """Gini index of ``|x|`` (Hurley & Rickard 2009, eq. for ``S_Gini``), beside PQI (SPEC 3.1).

    With the magnitudes sorted ascending, ``c_(1) <= ... <= c_(N)``::

        G = 1 - 2 sum_k (c_(k) / ||c||_1) (N - k + 1/2) / N

    0 for a constant vector, ``1 - 1/N`` for a one-hot vector. ``x`` is an array or a pytree
    (flattened globally); NaN/Inf or the zero vector raise ``ValueError`` naming x. ``mask``
    (True = live) restricts the index to the live entries (``N`` = their number) without
    changing shapes. Sorts, so ``O(N log N)``: a comparison tool, not a hot-path measure.

    Example:
      >>> import jax.numpy as jnp
      >>> import prune_jax as pj
      >>> round(float(pj.gini_index(jnp.ones(4))), 4)                    # constant: 0
      0.0
      >>> round(float(pj.gini_index(jnp.array([0.0, 0.0, 3.0, 0.0]))), 4)  # one-hot: 1 - 1/4
      0.75
    """
    leaves, n_live = _masked_leaves(x, mask, _leaves_of(x, "x"))
    dtype = _compute_dtype(leaves)
    flat = jnp.concatenate([jnp.ravel(leaf).astype(dtype) for leaf in leaves])
    if is_concrete(x):  # global reductions under jit: replicated scalars (multi-host safe)
        check_finite(jax.tree.unflatten(jax.tree.structure(x), leaves), "x")  # names the leaf
        if not bool(jnp.any(flat != 0)):
            raise ValueError("x is the zero vector; its Gini index is undefined")
    return _gini_core(flat, n_live)


class PQStats(NamedTuple):
    """Per-unit PQ Index and PQI bound (float64 numpy arrays; NaN where undefined)."""

    pqi: np.ndarray
    r: np.ndarray


def unit_power_sums_f64(leaves: list[Array], live: list[Array] | None, *, p: float,
                        q: float, scope: Scope) -> PowerSums:
    """:func:`unit_power_sums` in float64, fetched to the host as numpy arrays (SPEC 3.2).

    The bound and the counts derived from it must not be off by one through rounding (a
    one-hot unit has ``r = 1`` exactly), and float32 power sums carry ~1e-7 relative error.
    So the leaves are upcast and reduced with 64-bit types enabled for this call only (the
    flag is scoped to this thread and this block; nothing float64 escapes but numpy arrays).
    Needs a backend with float64 (CPU, GPU). Per-unit sums of sharded leaves may come out
    sharded; :func:`prune_jax.tree.to_host` replicates them first when this process cannot
    read them (multi-host).
    """
    with jax.enable_x64(True):
        wide = [jnp.asarray(x, jnp.float64) for x in leaves]
        return to_host(unit_power_sums(wide, live, p=p, q=q, scope=scope))


def pq_stats_from_sums(d: np.ndarray, s_p: np.ndarray, s_q: np.ndarray, *,
                       p: float, q: float, eta: float) -> PQStats:
    """PQ Index and eq. 2's bound ``r`` from power sums, in float64 on the host (SPEC 3.2).

    ``log r = log d + (qp/(q-p)) log(1 - I) - (q/(q-p)) log1p(eta)`` with
    ``log(1 - I) = log(M_p/M_q)``. Units with ``d = 0`` or no non-zero live weight get NaN.
    """
    d = np.asarray(d, np.float64)
    s_p, s_q = np.asarray(s_p, np.float64), np.asarray(s_q, np.float64)
    valid = (d > 0) & (s_p > 0) & (s_q > 0)
    d1, sp1, sq1 = np.where(valid, d, 1.0), np.where(valid, s_p, 1.0), np.where(valid, s_q, 1.0)
    log_ratio = _log_mean_ratio(d1, sp1, sq1, p, q)
    pqi = np.maximum(-np.expm1(log_ratio), 0.0)
    log_r = np.log(d1) + (q * p / (q - p)) * log_ratio - (q / (q - p)) * np.log1p(eta)
    r = np.minimum(np.exp(log_r), d1)
    return PQStats(pqi=np.where(valid, pqi, np.nan), r=np.where(valid, r, np.nan))


def check_eta(eta: float) -> float:
    """Validate the compression hyper-parameter ``eta_r >= 0`` of eq. 2."""
    eta = check_real(eta, "eta")
    if eta < 0:
        raise ValueError(f"eta must be >= 0, got {eta}")
    return eta


@on_auto_mesh
def pqi_retained_bound(x: PyTree, p: float = 0.5, q: float = 1.0, eta: float = 0.0) -> float:
    """Lower bound on the number of weights to retain (SPEC 3.2, seed Theorem 2 / eq. 2)::

        r >= d (1 + eta)^(-q/(q-p)) [1 - I_pq(x)]^(qp/(q-p))

    Theorem 2 says: if the ``r`` largest magnitudes of ``x`` hold all but ``eta`` of the
    ``l_p`` mass (``sum_{i not in M_r} |x_i|^p <= eta sum_{i in M_r} |x_i|^p``), then ``r`` is
    at least this value. With ``eta = 0`` this is a lower bound on the number of non-zeros.
    Note that ``d [1 - I]^(qp/(q-p)) = (||x||_p / ||x||_q)^(qp/(q-p))``.

    Args:
      x: array or pytree (flattened globally); validated like :func:`pq_index`.
      p, q: PQ Index exponents, ``0 < p <= 1 <= q``, ``p < q``.
      eta: ``eta_r >= 0``.

    Returns:
      The bound as a Python float (a real number, not rounded): power sums reduced in
      float64 on the device, the formula in float64 numpy on the host.

    Example:
      With ``eta = 0`` the bound is ``d`` for a constant vector and 1 for a one-hot vector;
      ``eta > 0`` loosens it by the factor ``(1 + eta)^(-q/(q-p))`` (``1.5^-2`` for the
      default (p, q) = (0.5, 1)):

      >>> import jax.numpy as jnp
      >>> import prune_jax as pj
      >>> round(pj.pqi_retained_bound(jnp.ones(4)), 6)
      4.0
      >>> onehot = jnp.array([0.0, 0.0, 3.0, 0.0])
      >>> round(pj.pqi_retained_bound(onehot), 6)
      1.0
      >>> round(pj.pqi_retained_bound(onehot, eta=0.5), 4), round(1.5 ** -2, 4)
      (0.4444, 0.4444)
    """
    p, q = check_pq(p, q)
    eta = check_eta(eta)
    leaves = _leaves_of(x, "x")
    sums = unit_power_sums_f64(leaves, None, p=p, q=q, scope="global")
    _raise_on_bad_sums(sums.s_p[0], sums.s_q[0], x, "x")
    return float(pq_stats_from_sums(sums.d[0], sums.s_p[0], sums.s_q[0], p=p, q=q, eta=eta).r[0])
