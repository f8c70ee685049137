"""Independent numpy (float64) oracles for the sparsity tests: direct formulas and sorting."""

from __future__ import annotations

import numpy as np


def pqi_np(w: np.ndarray, p: float, q: float) -> float:
    """Definition 1 literally: ``1 - d^(1/q-1/p) ||w||_p / ||w||_q`` in float64."""
    a = np.abs(np.asarray(w, np.float64)).ravel()
    d = a.size
    norm_p = np.sum(a**p) ** (1 / p)
    norm_q = np.sum(a**q) ** (1 / q)
    return float(1.0 - d ** (1 / q - 1 / p) * norm_p / norm_q)


def bound_np(w: np.ndarray, p: float, q: float, eta: float) -> float:
    """Eq. 2 literally: ``d (1+eta)^(-q/(q-p)) [1 - I]^(qp/(q-p))`` in float64."""
    d = np.asarray(w).size
    return float(d * (1 + eta) ** (-q / (q - p)) * (1 - pqi_np(w, p, q)) ** (q * p / (q - p)))


def gini_np(w: np.ndarray) -> float:
    """Hurley & Rickard's Gini index, by an explicit loop over the sorted magnitudes."""
    c = np.sort(np.abs(np.asarray(w, np.float64)).ravel())
    n, total = c.size, c.sum()
    return float(1 - 2 * sum(c[k - 1] / total * (n - k + 0.5) / n for k in range(1, n + 1)))


def units_np(leaves: list[np.ndarray], scope: str) -> list[list[tuple[int, np.ndarray]]]:
    """Each scope unit as a list of (leaf index, flat indices into that leaf), in flat order."""
    if scope == "global":
        return [[(i, np.arange(x.size)) for i, x in enumerate(leaves)]]
    if scope == "layer":
        return [[(i, np.arange(x.size))] for i, x in enumerate(leaves)]
    units = []
    for i, x in enumerate(leaves):
        n_out = x.shape[-1]
        flat = np.arange(x.size)
        units.extend([[(i, flat[flat % n_out == j])] for j in range(n_out)])
    return units


def remove_smallest_np(values: np.ndarray, live: np.ndarray, k: int) -> np.ndarray:
    """Boolean "removed": the k smallest by (pruned first, |value|, position), via lexsort."""
    key = np.where(live, np.abs(values.astype(np.float64)), -1.0)
    order = np.lexsort((np.arange(values.size), key))
    removed = np.zeros(values.size, bool)
    removed[order[:k]] = True
    return removed


def gather(leaves: list[np.ndarray], unit: list[tuple[int, np.ndarray]]) -> np.ndarray:
    return np.concatenate([leaves[i].ravel()[idx] for i, idx in unit])


def scatter(out: list[np.ndarray], unit: list[tuple[int, np.ndarray]], values: np.ndarray
            ) -> None:
    start = 0
    for i, idx in unit:
        flat = out[i].reshape(-1)
        flat[idx] = values[start:start + idx.size]
        start += idx.size
