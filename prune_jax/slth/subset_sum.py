"""Exact subset sum by meet-in-the-middle, float64, vectorised with JAX (SPEC 4, weight arm).

``min_S |sum_{i in S} values_i - target|``: enumerate the 2^(n/2) sums of each half, sort one
half, and for every sum of the other look up the nearest complement with ``searchsorted`` (the
two neighbours of the insertion point). EXACT up to float64 rounding of the sums.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from prune_jax.tree import Array
from prune_jax.validate import check_int

__all__ = ["MAX_ITEMS", "SubsetSum", "subset_sum", "subset_sum_brute_force"]

MAX_ITEMS = 44
"""Default largest instance: 2^22 sums per half (32 MiB of float64 each)."""

class SubsetSum(NamedTuple):
    """Best subset: ``residual = sum(values[chosen]) - target`` (signed); ``chosen`` (..., n)."""

    residual: np.ndarray
    chosen: np.ndarray


def _subset_sums(values: Array) -> Array:
    """All 2^m subset sums; bit i of the index says whether item i is in the subset."""
    index = jnp.arange(2 ** values.shape[0])
    add_item = lambda i, sums: sums + ((index >> i) & 1) * values[i]
    return jax.lax.fori_loop(0, values.shape[0], add_item, jnp.zeros(index.shape, values.dtype))


def _bits(index: Array, m: int) -> Array:
    return ((index >> jnp.arange(m)) & 1).astype(bool)


def _mitm(values: Array, target: Array) -> tuple[Array, Array]:
    n = values.shape[0]
    a = n // 2
    sums_a, sums_b = _subset_sums(values[:a]), _subset_sums(values[a:])
    order = jnp.argsort(sums_b)
    sorted_b = sums_b[order]
    right = jnp.searchsorted(sorted_b, target - sums_a)
    cand = jnp.clip(jnp.stack([right - 1, right], -1), 0, sorted_b.shape[0] - 1)
    totals = sums_a[:, None] + sorted_b[cand]
    best = jnp.argmin(jnp.abs(totals - target))
    ia, jc = jnp.divmod(best, 2)
    ib = order[cand[ia, jc]]
    chosen = jnp.concatenate([_bits(ia, a), _bits(ib, n - a)])
    return totals[ia, jc] - target, chosen


_mitm_batched = jax.jit(jax.vmap(_mitm))
_CHUNK = 16  # instances per call: one compiled shape per item bucket


def _as_instances(values: object, target: object) -> tuple[np.ndarray, np.ndarray]:
    values = np.asarray(values, np.float64)
    target = np.asarray(target, np.float64)
    if values.ndim < 1:
        raise ValueError(f"values must have at least one axis (..., n), got shape {values.shape}")
    if target.shape != values.shape[:-1]:
        raise ValueError(f"target must have shape values.shape[:-1] = {values.shape[:-1]}, "
                         f"got {target.shape}")
    if not (np.all(np.isfinite(values)) and np.all(np.isfinite(target))):
        raise ValueError("values and target must be finite")
    return values, target


def subset_sum(values: object, target: object, *, max_items: int = MAX_ITEMS) -> SubsetSum:
    """EXACT closest subset sum by meet-in-the-middle in float64 (x64 enabled locally).

    ``values`` (..., n) and ``target`` (...) are a batch of independent instances; ``n`` is
    limited to ``max_items`` (the enumeration holds 2^(n/2) sums per half).
    """
    values, target = _as_instances(values, target)
    n = values.shape[-1]
    check_int(max_items, "max_items", low=1, high=48)
    if n > max_items:
        raise ValueError(f"values has {n} items per instance; meet-in-the-middle enumerates "
                         f"2^(n/2) sums per half and is limited to max_items={max_items}")
    if n == 0:
        return SubsetSum(-target, np.zeros(values.shape, bool))
    # Zero padding (items of value 0, instances of target 0) changes no optimum and keeps the
    # compiled shapes few: items to a multiple of 4, instances to chunks of 16.
    batch = values.shape[:-1]
    flat_v, flat_t = values.reshape(-1, n), target.reshape(-1)
    b = flat_t.size
    size = -(-b // _CHUNK) * _CHUNK
    flat_v = np.pad(flat_v, ((0, size - b), (0, -(-n // 4) * 4 - n)))
    flat_t = np.pad(flat_t, (0, size - b))
    with jax.enable_x64(True):
        parts = [_mitm_batched(jnp.asarray(flat_v[i:i + _CHUNK]), jnp.asarray(flat_t[i:i + _CHUNK]))
                 for i in range(0, size, _CHUNK)]
    residual, chosen = (np.concatenate([np.asarray(part[j]) for part in parts]) for j in (0, 1))
    return SubsetSum(residual[:b].reshape(batch), chosen[:b, :n].reshape(*batch, n))


def subset_sum_brute_force(values: object, target: object) -> SubsetSum:
    """Reference: EXACT closest subset sum by enumerating all 2^n subsets (numpy, n <= 24)."""
    values, target = _as_instances(values, target)
    n = values.shape[-1]
    if n > 24:
        raise ValueError(f"values has {n} items; brute force is limited to 24")
    bits = ((np.arange(2**n)[:, None] >> np.arange(n)) & 1).astype(bool)
    sums = values @ bits.T.astype(np.float64)  # (..., 2^n)
    best = np.argmin(np.abs(sums - target[..., None]), axis=-1)
    residual = np.take_along_axis(sums, best[..., None], -1)[..., 0] - target
    return SubsetSum(residual, bits[best])
