"""Sparsity measures: PQ Index, Gini index and the PQI bound on retained weights (SPEC 3.1-3.2).

``I_pq(w) = 1 - d^(1/q - 1/p) ||w||_p / ||w||_q = 1 - M_p(|w|) / M_q(|w|)`` (seed eq. 1), with
the power means ``M_r(a) = (mean_i a_i^r)^(1/r)`` from power sums of ``|w| / max |w|`` (terms
in ``[0, 1]``: nothing overflows, and the ratio does not depend on the scale), the ratio taken
in logs (no factor ``d^(1/q - 1/p)`` is formed).
"""

from __future__ import annotations

from functools import partial, reduce
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from prune_jax.ranking import float_dtype, readable, unit_sizes, unit_view
from prune_jax.sparsity.masks import check_mask
from prune_jax.tree import PyTree, to_host
from prune_jax.validate import (
    check_finite_tree,
    check_no_explicit_mesh,
    check_positive,
    check_real,
    check_tree,
    is_concrete,
)

Array = jax.Array

__all__ = ["gini_index", "pq_index", "pqi_retained_bound"]


def check_pq(p: Any, q: Any) -> tuple[float, float]:
    """Validate the PQ Index exponents (SPEC 3.1): ``0 < p <= 1 <= q`` and ``p < q``."""
    p, q = check_real(p, "p"), check_real(q, "q")
    if not 0.0 < p <= 1.0:
        raise ValueError(f"p must satisfy 0 < p <= 1, got p={p}")
    if q < 1.0:
        raise ValueError(f"q must satisfy q >= 1, got q={q}")
    if not p < q:
        raise ValueError(f"p and q must satisfy p < q, got p={p}, q={q}")
    return p, q


class PowerSums(NamedTuple):
    """Per scope unit (:func:`prune_jax.ranking.unit_sizes` order): ``d`` live weights,
    ``top = max |w|`` and ``s_r = sum (|w| / top)^r`` for ``r = p, q`` (0 if all are zero)."""

    d: Array
    top: Array
    s_p: Array
    s_q: Array


def _power_sums(xp: Any, leaves: list[Any], live: list[Any] | None, p: float, q: float,
                scope: str, dtype: Any) -> PowerSums:
    """:class:`PowerSums` in ``xp`` (numpy or jax.numpy), leaf by leaf (numpy holds one leaf's
    temporaries at a time)."""
    def mags(i: int) -> Any:   # |w| of leaf i as (m, u) units, pruned entries 0
        a = unit_view(xp.abs(leaves[i].astype(dtype, copy=False)), scope)
        return a if live is None else xp.where(unit_view(live[i], scope), a, 0)

    def reduced(f: Any, a: Any, **kwargs: Any) -> Any:
        # flat reductions where a unit is a whole leaf (XLA:CPU reduces (n, 1) columns slowly)
        return f(a, axis=0, **kwargs) if scope == "neuron" else f(a, **kwargs).reshape(1)

    def per_unit(parts: list[Any], combine: Any) -> Any:
        return reduce(combine, parts) if scope == "global" else xp.concatenate(parts)

    def power(a: Any, e: float) -> Any:   # the common exponents exactly and cheaply
        return {1.0: lambda: a, 2.0: lambda: a * a, 0.5: lambda: xp.sqrt(a)}.get(e, lambda: a**e)()

    n = len(leaves)
    top = per_unit([reduced(xp.max, mags(i), initial=0) for i in range(n)], xp.maximum)
    # a / top as two products with 1 / sqrt(top): XLA turns a division into a product with
    # 1 / top, which is subnormal (flushed to 0 on CPU) for top > 2^126
    root = 1 / xp.sqrt(xp.where(top > 0, top, 1))
    ends = np.cumsum([unit_view(x, scope).shape[1] for x in leaves])[:-1]
    roots = [root] * n if scope == "global" else xp.split(root, ends)
    sums = []
    for i in range(n):
        a = mags(i) * roots[i] * roots[i]
        sums.append([reduced(xp.sum, power(a, e)) for e in (p, q)])
    if live is None:
        d = xp.asarray(unit_sizes([x.shape for x in leaves], scope), np.int32)
    else:
        d = per_unit([reduced(xp.sum, unit_view(m, scope), dtype=np.int32) for m in live],
                     xp.add)
    return PowerSums(d, top, *(per_unit(list(s), xp.add) for s in zip(*sums, strict=True)))


_power_sums_jit = jax.jit(partial(_power_sums, jnp), static_argnums=(2, 3, 4, 5))


def power_sums(leaves: list[Array], live: list[Array] | None, *, p: float, q: float,
               scope: str = "global", wide: bool = False) -> PowerSums:
    """:class:`PowerSums` per scope unit (``live``: masks or None), in float32 (float64 for
    float64 leaves); ``wide=True``: in float64, on the host."""
    dtype = np.float64 if wide else float_dtype(leaves)
    if (host := readable(leaves, live)) is not None:
        with np.errstate(invalid="ignore"):   # NaN/Inf input: the caller raises
            return _power_sums(np, *host, p, q, scope, dtype)
    if not wide:
        return _power_sums_jit(leaves, live, p, q, scope, dtype)
    with jax.enable_x64(True):
        return to_host(_power_sums_jit(leaves, live, p, q, scope, dtype))


def _log_ratio(xp: Any, sums: PowerSums, p: float, q: float) -> Any:
    """``log(M_p / M_q) = log(1 - I_pq)`` per unit."""
    d = sums.d.astype(sums.s_p.dtype)
    return xp.log(sums.s_p / d) / p - xp.log(sums.s_q / d) / q


def pq_bound(sums: PowerSums, *, p: float, q: float, eta: float) -> tuple[np.ndarray, np.ndarray]:
    """PQ Index and eq. 2's bound ``r`` per unit from host power sums, in float64 (NaN for
    units without a non-zero live weight):
    ``log r = log d + (qp/(q-p)) log(1 - I) - (q/(q-p)) log1p(eta)``."""
    sums = PowerSums(*(np.asarray(v, np.float64) for v in sums))
    valid = sums.s_q > 0
    sums = PowerSums(*(np.where(valid, v, 1.0) for v in sums))
    log_ratio = _log_ratio(np, sums, p, q)
    log_r = np.log(sums.d) + (q * p / (q - p)) * log_ratio - (q / (q - p)) * np.log1p(eta)
    pqi = np.maximum(-np.expm1(log_ratio), 0.0)
    return np.where(valid, pqi, np.nan), np.where(valid, np.minimum(np.exp(log_r), sums.d),
                                                  np.nan)


def _inputs(x: PyTree, mask: PyTree | None) -> tuple[list[Array], list[Array] | None]:
    """Validated leaves of ``x`` and of ``mask`` (structure, dtypes; no device sync)."""
    check_tree(x, "x")
    check_no_explicit_mesh(x, "x")
    if mask is not None:
        check_mask(mask, x, "mask", "x")
    return jax.tree.leaves(x), None if mask is None else jax.tree.leaves(mask)


def _raise_if_bad(x: PyTree, measure: str, top: Array, total: Array) -> None:
    """NaN/Inf (naming the leaf) or the zero vector is a ValueError (not under ``jit``).
    ``total`` is a sum, since NaN propagates through sums (a cross-process max may drop it)."""
    if not is_concrete(x):
        return
    top, total = (float(v) for v in to_host((top, total)))
    if not np.isfinite(top + total):
        check_finite_tree(x, "x")   # raises naming the leaf if x holds NaN/Inf (error path)
    if top == 0:
        raise ValueError(f"x is the zero vector; its {measure} is undefined (SPEC 3.1)")


def pq_index(x: PyTree, p: float = 0.5, q: float = 1.0, *, mask: PyTree | None = None
             ) -> Array:
    """PQ Index ``I_pq(x) = 1 - d^(1/q-1/p) ||x||_p / ||x||_q`` (SPEC 3.1, seed eq. 1).

    Args:
      x: an array, or a pytree taken as one flat vector (``d`` = total size); floating, not
        all zero, no NaN/Inf (``ValueError``; under ``jit`` unchecked: NaN).
      p, q: exponents with ``0 < p <= 1 <= q`` and ``p < q``.
      mask: optional boolean pytree like ``x`` (True = live): the index of the live entries
        only (``d`` = their number); a new mask does not recompile.

    Returns:
      A scalar array in ``[0, 1 - d^(1/q-1/p)]`` (larger = sparser), in float32 (float64 for
      float64 input; subnormals count as 0 where XLA flushes them).

    Example:
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
    sums = power_sums(*_inputs(x, mask), p=p, q=q)
    _raise_if_bad(x, "PQ Index", sums.top[0], sums.s_q[0])
    xp = np if isinstance(sums.s_q, np.ndarray) else jnp
    index = xp.maximum(-xp.expm1(_log_ratio(xp, sums, p, q)), 0)
    return jnp.asarray(xp.where(sums.s_q > 0, index, xp.nan)[0])


def _gini(xp: Any, leaves: list[Any], live: list[Any] | None) -> tuple[Any, Any]:
    """Gini index and the largest live magnitude, in the namespace ``xp``."""
    dtype = float_dtype(leaves)
    c = xp.concatenate([xp.abs(x.astype(dtype)).reshape(-1) for x in leaves])
    if live is not None:   # dead entries are zeros sorted first: they add nothing below
        c = xp.where(xp.concatenate([m.reshape(-1) for m in live]), c, 0)
    n = c.size if live is None else sum(m.sum(dtype=np.int32) for m in live)
    c = xp.sort(c)
    k = xp.arange(1, c.size + 1, dtype=dtype)   # live rank = k - dead: (n - rank + 1/2) =
    weights = (c.size - k + 0.5) / n            # (size - k + 1/2)
    return 1.0 - 2.0 * xp.sum(c / xp.sum(c) * weights), c[-1]


_gini_jit = jax.jit(partial(_gini, jnp))


def gini_index(x: PyTree, *, mask: PyTree | None = None) -> Array:
    """Gini index ``1 - 2 sum_k (c_(k) / ||c||_1) (N - k + 1/2) / N`` of the sorted magnitudes
    ``c_(1) <= ... <= c_(N)`` (Hurley & Rickard 2009; SPEC 3.1); ``x``, ``mask``: as in
    :func:`pq_index`.

    Example:
      >>> round(float(pj.gini_index(jnp.ones(4))), 4)                    # constant: 0
      0.0
      >>> round(float(pj.gini_index(jnp.array([0.0, 0.0, 3.0, 0.0]))), 4)  # one-hot: 1 - 1/4
      0.75
    """
    leaves, live = _inputs(x, mask)
    if (host := readable(leaves, live)) is not None:
        with np.errstate(invalid="ignore"):   # zero vector, NaN/Inf: raised below
            gini, top = _gini(np, *host)
    else:
        gini, top = _gini_jit(leaves, live)
    _raise_if_bad(x, "Gini index", top, gini)
    return jnp.asarray(gini)


def pqi_retained_bound(x: PyTree, p: float = 0.5, q: float = 1.0, eta: float = 0.0) -> float:
    """Lower bound on the number of weights to retain (SPEC 3.2, seed Theorem 2 / eq. 2)::

        r >= d (1 + eta)^(-q/(q-p)) [1 - I_pq(x)]^(qp/(q-p))

    If the ``r`` largest magnitudes hold all but ``eta >= 0`` of the ``l_p`` mass, ``r`` is at
    least this value (``eta = 0``: a bound on the number of non-zeros). ``x``, ``p``, ``q`` as
    in :func:`pq_index`. Returns a Python float, computed in float64.

    Example:
      ``d`` for a constant vector, 1 for a one-hot vector, loosened by ``(1 + eta)^(-q/(q-p))``:

      >>> round(pj.pqi_retained_bound(jnp.ones(4)), 6)
      4.0
      >>> onehot = jnp.array([0.0, 0.0, 3.0, 0.0])
      >>> round(pj.pqi_retained_bound(onehot), 6)
      1.0
      >>> round(pj.pqi_retained_bound(onehot, eta=0.5), 4), round(1.5 ** -2, 4)
      (0.4444, 0.4444)
    """
    p, q = check_pq(p, q)
    eta = check_positive(eta, "eta", allow_zero=True)
    sums = power_sums(*_inputs(x, None), p=p, q=q, wide=True)
    _raise_if_bad(x, "PQ Index", sums.top[0], sums.s_q[0])
    return float(pq_bound(sums, p=p, q=q, eta=eta)[1][0])
