"""Weight arm: the Pensia et al. (2020) subset-sum construction and its certificate (SPEC 4).

Unit ``i`` keeps only input coordinate ``j = i mod d``. Since ``relu(w x) = w relu(x)`` for
``w > 0`` and ``|w| relu(-x)`` for ``w < 0``, the kept units of coordinate ``j`` compute
``S+_j relu(x_j) + S-_j relu(-x_j)``, with exact subset sums ``S+_j ~ w*_j`` of
``alpha_i w_ij`` (``w_ij > 0``) and ``S-_j ~ -w*_j`` of ``alpha_i |w_ij|`` (``w_ij < 0``). The
output ReLU is 1-Lipschitz, so a CERTIFIED UPPER bound on the sup error over the unit ball is::

    |relu(<w*, x>) - relu(h(x))| <= |<w*, x> - h(x)| <= sum_j m_j |x_j| <= ||m||_2,
    m_j = max(|S+_j - w*_j|, |S-_j + w*_j|).

Units are taken in pool order: one table of exact solutions over each group's first ``k``
members, ``k = 0..max_items``, gives the certificate for every width ``N``.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from prune_jax.slth.networks import Pool, WeightMask
from prune_jax.slth.subset_sum import subset_sum
from prune_jax.validate import check_int, check_positive, check_shape

__all__ = ["PensiaNetwork", "PensiaTable", "pensia_certificate", "pensia_network", "pensia_table",
           "required_width"]

_BUCKET = 4  # instances are zero-padded to a multiple of this: fewer compiled shapes
# Relative and absolute slack on the bound for float64 rounding: a measured error can tie the
# bound exactly (in d = 2 the worst point can be a coordinate axis).
_ROUNDING = 1e-12


class PensiaTable(NamedTuple):
    """Exact subset sums per group (coordinate ``j``, sign) and prefix length ``k``.

    ``residual[g, k]`` is the signed residual of the best subset of the first ``k`` members of
    group ``g = 2 j + (w_ij < 0)``; ``chosen[g, k, p]`` says whether member ``p`` is in it;
    ``members[g, p]`` is that member's unit index (-1 past the group's end); ``counts[N, g]``
    is how many members group ``g`` has among the first ``N`` units.
    """

    residual: np.ndarray
    chosen: np.ndarray
    members: np.ndarray
    counts: np.ndarray


class PensiaNetwork(NamedTuple):
    """The constructed weight mask over the first ``width`` units and its certificate."""

    mask: WeightMask
    certificate: float
    width: int


def pensia_table(w_star: object, pool: Pool, max_items: int = 32) -> PensiaTable:
    """EXACT (float64) subset sums for every group and prefix ``k <= max_items`` (SPEC 4)."""
    w_star = np.asarray(w_star, np.float64)
    w, alpha = np.asarray(pool.w, np.float64), np.asarray(pool.alpha, np.float64)
    d = check_int(w_star.shape[0] if w_star.ndim == 1 else -1, "d (len(w_star))", low=2)
    check_shape(w, (None, d), "pool.w")
    check_shape(alpha, (w.shape[0],), "pool.alpha")
    max_items = check_int(max_items, "max_items", low=1, high=44)
    coord = np.arange(w.shape[0]) % d  # unit i keeps input coordinate i mod d
    w_ij = w[np.arange(w.shape[0]), coord]
    group = 2 * coord + (w_ij < 0)
    targets = np.stack([w_star, -w_star], axis=1).ravel()  # group 2 j + sign
    values = alpha * np.abs(w_ij)  # alpha_i w_ij for w_ij > 0, alpha_i |w_ij| for w_ij < 0
    n_groups = 2 * d
    members = np.full((n_groups, max_items), -1, np.int64)
    for g in range(n_groups):
        idx = np.flatnonzero(group == g)[:max_items]
        members[g, :idx.size] = idx
    items = np.where(members >= 0, values[np.maximum(members, 0)], 0.0)
    k_pad = -(-max_items // _BUCKET) * _BUCKET
    items = np.pad(items, ((0, 0), (0, k_pad - max_items)))
    residual = np.empty((n_groups, max_items + 1))
    chosen = np.zeros((n_groups, max_items + 1, k_pad), bool)
    residual[:, 0] = -targets
    for width in range(_BUCKET, k_pad + 1, _BUCKET):  # one batched solver call per bucket
        ks = np.arange(width - _BUCKET + 1, min(width, max_items) + 1)
        padded = np.where(np.arange(width) < ks[:, None, None], items[None, :, :width], 0.0)
        best = subset_sum(padded, np.broadcast_to(targets, padded.shape[:-1]), max_items=width)
        residual[:, ks] = best.residual.T
        chosen[:, ks, :width] = np.swapaxes(best.chosen, 0, 1)
    # Padding items are zeros that the solver may pick: keep member p only where p < k.
    chosen = chosen[..., :max_items] & (np.arange(max_items) < np.arange(max_items + 1)[:, None])
    one_hot = group[:, None] == np.arange(n_groups)
    counts = np.concatenate([np.zeros((1, n_groups), np.int64), np.cumsum(one_hot, 0)])
    return PensiaTable(residual, chosen & (members >= 0)[:, None, :], members, counts)


def pensia_certificate(table: PensiaTable) -> np.ndarray:
    """CERTIFIED UPPER bound ``||m||_2`` on the sup error for every width ``N = 0..P`` (a group
    with more than ``max_items`` members uses its first ``max_items``: still valid)."""
    k = np.minimum(table.counts, table.chosen.shape[-1])
    res = np.abs(np.take_along_axis(table.residual, k.T, axis=1)).T  # (P+1, G)
    m = np.maximum(res[:, 0::2], res[:, 1::2])
    return np.sqrt(np.sum(m**2, axis=1)) * (1.0 + _ROUNDING) + _ROUNDING


def pensia_network(table: PensiaTable, width: int) -> PensiaNetwork:
    """The constructed weight mask over the first ``width`` units, with its certificate."""
    width = check_int(width, "width", low=1, high=table.counts.shape[0] - 1)
    n_groups, d = table.members.shape[0], table.members.shape[0] // 2
    k = np.minimum(table.counts[width], table.chosen.shape[-1])
    units = table.members[table.chosen[np.arange(n_groups), k]]  # the kept members
    hidden = np.zeros((width, d), bool)
    hidden[units, units % d] = True
    cert = float(pensia_certificate(table)[width])
    return PensiaNetwork(WeightMask(hidden, hidden.any(axis=1)), cert, width)


def required_width(curve: np.ndarray, eps: float, widths: np.ndarray | None = None) -> int | None:
    """Smallest width whose error bound is ``<= eps`` (None when no width of ``curve`` reaches it).

    ``curve[i]`` bounds the error at width ``widths[i]`` (default ``i``). For the certificate this
    is a CERTIFIED UPPER bound on the smallest width that weight pruning needs.
    """
    check_positive(eps, "eps")
    curve = np.asarray(curve)
    widths = np.arange(curve.shape[0]) if widths is None else np.asarray(widths)
    hit = np.flatnonzero(curve <= eps)
    return int(widths[hit[0]]) if hit.size else None
