"""Sparsity measures: PQ Index, Gini index and the PQI bound on retained weights (SPEC 3.1-3.2).

The PQ Index of a non-zero ``w`` in R^d, for ``0 < p <= 1 <= q`` and ``p < q``, is (seed paper,
Definition 1 / eq. 1)::

    I_pq(w) = 1 - d^(1/q - 1/p) ||w||_p / ||w||_q = 1 - M_p(|w|) / M_q(|w|),

where ``M_r(a) = (mean_i a_i^r)^(1/r)`` is the power mean. Both means come from power sums of
the magnitudes divided by ``max |w|`` (every term in ``[0, 1]``, the largest 1: nothing
overflows, and the ratio does not depend on the scale); the ratio is taken in logs, so no
factor of size ``d^(1/q - 1/p)`` is formed. ``I`` lies in ``[0, 1 - d^(1/q - 1/p)]`` and grows
with sparsity (Theorem 1).

The PQI bound (Theorem 2, eq. 2) on the number ``r`` of largest weights that hold all but a
fraction ``eta`` of the ``l_p`` mass, ``r >= d (1 + eta)^(-q/(q-p)) [1 - I(w)]^(qp/(q-p))``,
is evaluated in float64: power sums reduced in float64, the formula in numpy.
"""

from __future__ import annotations

from functools import partial, reduce
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from prune_jax.ranking import unit_sizes, unit_view
from prune_jax.sparsity.masks import check_mask
from prune_jax.tree import PyTree, fully_addressable, to_host
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
    """Per-unit statistics of the live weights (one entry per scope unit,
    :func:`prune_jax.ranking.unit_sizes` order): ``d`` live weights, ``top = max |w|`` and
    ``s_r = sum (|w| / top)^r`` for ``r = p, q`` (0 for a unit without non-zero weight)."""

    d: Array
    top: Array
    s_p: Array
    s_q: Array


def _power(xp: Any, a: Any, e: float) -> Any:
    """``a ** e`` for ``a >= 0``; the common exponents exactly and cheaply."""
    return {1.0: lambda: a, 2.0: lambda: a * a, 0.5: lambda: xp.sqrt(a)}.get(e, lambda: a**e)()


def _power_sums(xp: Any, leaves: list[Any], live: list[Any] | None, p: float, q: float,
                scope: str, dtype: Any) -> PowerSums:
    """:class:`PowerSums` in the array namespace ``xp`` (numpy or jax.numpy), leaf by leaf
    (numpy then holds one leaf's temporaries at a time)."""
    def mags(i: int) -> Any:   # |w| of leaf i as (m, u) units, pruned entries 0
        a = unit_view(xp.abs(leaves[i].astype(dtype, copy=False)), scope)
        return a if live is None else xp.where(unit_view(live[i], scope), a, 0)

    def reduced(f: Any, a: Any, **kwargs: Any) -> Any:
        # flat reductions where a unit is a whole leaf (XLA:CPU reduces (n, 1) columns slowly)
        return f(a, axis=0, **kwargs) if scope == "neuron" else f(a, **kwargs).reshape(1)

    def per_unit(parts: list[Any], combine: Any) -> Any:
        return reduce(combine, parts) if scope == "global" else xp.concatenate(parts)

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
        sums.append([reduced(xp.sum, _power(xp, a, e)) for e in (p, q)])
    if live is None:
        d = xp.asarray(unit_sizes([x.shape for x in leaves], scope), np.int32)
    else:
        d = per_unit([reduced(xp.sum, unit_view(m, scope), dtype=np.int32) for m in live],
                     xp.add)
    return PowerSums(d, top, *(per_unit(list(s), xp.add) for s in zip(*sums, strict=True)))


_power_sums_jit = jax.jit(partial(_power_sums, jnp), static_argnums=(2, 3, 4, 5))


def power_sums(leaves: list[Array], live: list[Array] | None, *, p: float, q: float,
               scope: str = "global", wide: bool = False) -> PowerSums:
    """:class:`PowerSums` of every scope unit of ``leaves`` (``live``: masks, None = all live).

    numpy on the host when this process can read the arrays (no compilation; numpy's
    pairwise sums), else ``jnp`` (under ``jit``, or arrays of other processes). In float32
    (float64 for float64 leaves); ``wide=True``: in float64, fetched to the host (concrete
    arrays only).
    """
    dtype = np.float64 if wide else np.promote_types(_float_dtype(leaves), np.float32)
    if is_concrete((leaves, live)) and fully_addressable((leaves, live)):
        host = [np.asarray(x) for x in leaves]
        masks = None if live is None else [np.asarray(m) for m in live]
        with np.errstate(invalid="ignore"):   # NaN/Inf input: the caller raises
            return _power_sums(np, host, masks, p, q, scope, dtype)
    if not wide:
        return _power_sums_jit(leaves, live, p, q, scope, dtype)
    with jax.enable_x64(True):
        return to_host(_power_sums_jit(leaves, live, p, q, scope, dtype))


def _float_dtype(leaves: list[Any]) -> np.dtype:
    return np.result_type(*(np.dtype(x.dtype) for x in leaves))


def _log_ratio(xp: Any, sums: PowerSums, p: float, q: float) -> Any:
    """``log(M_p / M_q) = log(1 - I_pq)`` per unit (``xp``: jnp or numpy)."""
    d = sums.d.astype(sums.s_p.dtype)
    return xp.log(sums.s_p / d) / p - xp.log(sums.s_q / d) / q


def pq_bound(sums: PowerSums, *, p: float, q: float, eta: float) -> tuple[np.ndarray, np.ndarray]:
    """PQ Index and eq. 2's bound ``r`` per unit from host (numpy) power sums, in float64.

    ``log r = log d + (qp/(q-p)) log(1 - I) - (q/(q-p)) log1p(eta)``; NaN for units without
    a non-zero live weight.
    """
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
    """After the computation: NaN/Inf (naming the leaf) or the zero vector is a ValueError.

    ``top``: the largest live magnitude; ``total``: a sum over all of them (NaN propagates
    through sums, while a cross-process max may drop it). Nothing is checked under ``jit``.
    """
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
      x: an array, or a pytree whose leaves are taken together as one flat vector (``d`` =
        total size). Floating point; NaN/Inf or the all-zero vector raise ``ValueError``.
      p, q: exponents with ``0 < p <= 1 <= q`` and ``p < q`` (``ValueError`` naming p or q).
      mask: optional boolean pytree like ``x`` (True = live): the index of the live entries
        only (``d`` = number of live entries), as SAP measures a pruned model. Shapes stay
        static, so a changing mask does not recompile.

    Returns:
      A scalar array in ``[0, 1 - d^(1/q-1/p)]``: 0 for a constant vector, the upper end for a
      one-hot vector; larger means sparser. Computed in float32 (float64 for float64 input)
      from power sums of ``|x| / max |x|``. Subnormal inputs (below ~1.2e-38 in float32)
      count as 0 where XLA flushes denormals, as XLA:CPU does. Under an outer ``jit`` the
      value checks cannot run, and a zero vector (or NaN input) gives NaN.

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
    sums = power_sums(*_inputs(x, mask), p=p, q=q)
    _raise_if_bad(x, "PQ Index", sums.top[0], sums.s_q[0])
    xp = np if isinstance(sums.s_q, np.ndarray) else jnp
    index = xp.maximum(-xp.expm1(_log_ratio(xp, sums, p, q)), 0)
    return jnp.asarray(xp.where(sums.s_q > 0, index, xp.nan)[0])


def _gini(xp: Any, leaves: list[Any], live: list[Any] | None) -> tuple[Any, Any]:
    """Gini index and the largest live magnitude, in the array namespace ``xp``."""
    dtype = np.promote_types(_float_dtype(leaves), np.float32)
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
    leaves, live = _inputs(x, mask)
    if is_concrete(x) and fully_addressable((leaves, live)):
        with np.errstate(invalid="ignore"):   # zero vector, NaN/Inf: raised below
            gini, top = _gini(np, [np.asarray(v) for v in leaves],
                              None if live is None else [np.asarray(m) for m in live])
    else:
        gini, top = _gini_jit(leaves, live)
    _raise_if_bad(x, "Gini index", top, gini)
    return jnp.asarray(gini)


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
    eta = check_positive(eta, "eta", allow_zero=True)
    sums = power_sums(*_inputs(x, None), p=p, q=q, wide=True)
    _raise_if_bad(x, "PQ Index", sums.top[0], sums.s_q[0])
    return float(pq_bound(sums, p=p, q=q, eta=eta)[1][0])
