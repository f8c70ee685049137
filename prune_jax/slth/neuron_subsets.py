"""Neuron arm, primal side: actual subsets and their sup errors (SPEC 4).

Every subset is a feasible neuron mask, so its sup error is an UPPER bound on the best subset's
error: CERTIFIED in d = 2 where the error is exact, only ESTIMATED in d > 2. With the LP bounds
of :mod:`prune_jax.slth.neuron_lp` they bracket the best subset; the exact best subset by
mixed-integer LP is in :mod:`prune_jax.slth.neuron_milp`.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import numpy as np

from prune_jax.slth.networks import Pool, neuron_net
from prune_jax.slth.supnorm import SupSearch, bucket, sup_error, sup_error_2d_batch
from prune_jax.tree import Array
from prune_jax.validate import check_int, check_shape

__all__ = ["Subset", "SubsetBatch", "brute_force_2d", "local_search_2d", "random_subsets_2d",
           "rounded_subset", "subset_errors_2d"]


class Subset(NamedTuple):
    """A neuron mask ``keep`` (N,) bool and its sup error (``exact`` False: lower estimate)."""

    keep: np.ndarray
    error: float
    exact: bool


class SubsetBatch(NamedTuple):
    """Neuron masks ``keep`` (B, N) and their EXACT sup errors (B,)."""

    keep: np.ndarray
    errors: np.ndarray


def _pool64(pool: Pool) -> Pool:
    return Pool(np.asarray(pool.w, np.float64), np.asarray(pool.alpha, np.float64))


def subset_errors_2d(w_star: object, pool: Pool, keep: object,
                     output_relu: bool = False) -> np.ndarray:
    """EXACT sup errors of a batch of neuron masks ``keep`` (B, N), d = 2. SPEC 4."""
    w_star = np.asarray(w_star, np.float64)
    check_shape(w_star, (2,), "w_star (d = 2 only)")
    check_shape(pool.w, (None, 2), "pool.w")
    check_shape(pool.alpha, (pool.w.shape[0],), "pool.alpha")
    keep = np.asarray(keep, bool)
    check_shape(keep, (None, pool.w.shape[0]), "keep")
    p = _pool64(pool)
    with jax.enable_x64(True):
        return sup_error_2d_batch(w_star, p.w, keep * p.alpha, output_relu)


def random_subsets_2d(key: Array, w_star: object, pool: Pool, n_subsets: int,
                      output_relu: bool = False) -> SubsetBatch:
    """``n_subsets`` uniformly random masks (n_subsets, N) and their EXACT errors, d = 2. SPEC 4."""
    check_int(n_subsets, "n_subsets", low=1)
    n = pool.w.shape[0]
    keep = np.asarray(jax.random.bernoulli(key, 0.5, (n_subsets, bucket(n))))[:, :n]
    return SubsetBatch(keep, subset_errors_2d(w_star, pool, keep, output_relu))


def brute_force_2d(w_star: object, pool: Pool, output_relu: bool = False) -> Subset:
    """EXACT best subset by enumerating all 2^N masks (d = 2, N <= 16): the tests' reference."""
    check_shape(w_star, (2,), "w_star (d = 2 only)")
    n = check_int(pool.w.shape[0], "pool size N", low=1, high=16)
    keep = ((np.arange(2**n)[:, None] >> np.arange(n)) & 1).astype(bool)
    errors = subset_errors_2d(w_star, pool, keep, output_relu)
    i = int(np.argmin(errors))
    return Subset(keep[i], float(errors[i]), True)


def local_search_2d(w_star: object, pool: Pool, start: object | None = None,
                    output_relu: bool = False, steps: int | None = None) -> Subset:
    """Single-flip local search on the EXACT sup error, d = 2 (greedy when ``start`` is empty):
    each step flips the unit that lowers the error most, up to ``steps`` (default ``2 N``)."""
    n = pool.w.shape[0]
    steps = 2 * n if steps is None else check_int(steps, "steps", low=1)
    keep = np.zeros(n, bool) if start is None else np.asarray(start, bool)
    check_shape(keep, (n,), "start")
    error = float(subset_errors_2d(w_star, pool, keep[None], output_relu)[0])
    flips = np.eye(n, dtype=bool)
    for _ in range(steps):  # host loop: each step is one batched exact evaluation
        candidates = keep[None] ^ flips
        errors = subset_errors_2d(w_star, pool, candidates, output_relu)
        i = int(np.argmin(errors))
        if errors[i] >= error:
            break
        keep, error = candidates[i], float(errors[i])
    return Subset(keep, error, True)


def rounded_subset(key: Array, w_star: object, pool: Pool, s: object,
                   output_relu: bool = False, n_random: int = 16,
                   search: SupSearch | None = None) -> Subset:
    """Round a relaxed solution ``s`` in [0,1]^N: threshold 1/2 and ``n_random`` Bernoulli(s).
    The best candidate's error is EXACT in d = 2, a lower estimate in d > 2 (by ``search``)."""
    w_star = np.asarray(w_star, np.float64)
    s = np.clip(np.asarray(s, np.float64), 0.0, 1.0)
    check_shape(s, (pool.w.shape[0],), "s")
    check_int(n_random, "n_random", low=0)
    key, sub = jax.random.split(key)
    random = np.asarray(jax.random.uniform(sub, (n_random, bucket(s.shape[0]))))[:, :s.size] < s
    keep = np.concatenate([(s > 0.5)[None], random])
    exact = w_star.shape[0] == 2
    if exact:
        errors = subset_errors_2d(w_star, pool, keep, output_relu)
    else:
        p, search = _pool64(pool), search or SupSearch()
        with jax.enable_x64(True):
            errors = [sup_error(k, w_star, neuron_net(p, m), output_relu, search).value
                      for k, m in zip(jax.random.split(key, keep.shape[0]), keep, strict=True)]
    i = int(np.argmin(errors))
    return Subset(keep[i], float(errors[i]), exact)
