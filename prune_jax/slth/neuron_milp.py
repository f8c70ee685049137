"""Neuron arm: the best subset by mixed-integer LP, a lower bound tighter than the LP (SPEC 4).

On a finite point set ``x_k`` of the circle, with ``h = A s`` and a threshold ``eps0``::

    T(eps0) = min_{s in {0,1}^N} max( max_k (h_k - f_k), max_{k: f_k > eps0} (f_k - h_k) )

and every subset's error on the points is at least ``min(eps0, T(eps0))``: a subset with error
``E < eps0`` has ``relu(h_k) = h_k`` wherever ``f_k > eps0`` and ``h_k <= f_k + E`` everywhere,
so its objective is at most ``E``. ``eps0`` moves towards the crossing ``T(eps0) = eps0``
(bisection), one MILP (HiGHS) per round; without the output ReLU every point is two-sided and
the bound is ``T``. Cutting planes add the worst points of each incumbent (EXACT in d = 2) until
its sup error meets the bound: it is then a best subset. The bound is HiGHS's dual bound
deflated by the solver's tolerances, not recomputed from multipliers like the LP bounds of
:mod:`prune_jax.slth.neuron_lp`; the tests check it against brute force over all subsets.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import numpy as np
from scipy.optimize import LinearConstraint, milp

from prune_jax.slth.networks import Pool, neuron_net
from prune_jax.slth.neuron_lp import CuttingPlanes, features, initial_points
from prune_jax.slth.neuron_subsets import Subset, local_search_2d, subset_errors_2d
from prune_jax.slth.supnorm import worst_points
from prune_jax.validate import check_positive, check_shape

__all__ = ["MilpBound", "neuron_milp_bound_2d"]

_TOLERANCE = 1e-7  # HiGHS's primal and dual feasibility tolerances
_RELATIVE = 1e-6  # relative deflation of the dual bound


class MilpBound(NamedTuple):
    """Result of :func:`neuron_milp_bound_2d`: ``lower`` bounds every subset's sup error (HiGHS
    dual bound, deflated); ``subset`` is the best subset met (EXACT error), a best subset when
    ``optimal`` (its error meets ``lower``); ``points``: the final cut set; ``rounds``: MILPs."""

    lower: float
    subset: Subset
    optimal: bool
    points: np.ndarray
    rounds: int


def _solve(a: np.ndarray, f: np.ndarray, two_sided: np.ndarray, time_limit: float
           ) -> tuple[float, np.ndarray | None, float]:
    """``min t`` over ``s in {0,1}^N, t in [0, 1]``: ``h - t <= f``; ``f - h <= t`` if two-sided.

    Returns a lower bound on the optimum (the deflated dual bound), the incumbent subset (None
    if HiGHS found none) and its objective. ``t <= 1`` loses nothing: ``s = 0`` has objective
    ``<= max f <= 1`` on unit points.
    """
    n = a.shape[1]
    ones = np.ones((a.shape[0], 1))
    rows = np.block([[a, -ones], [-a[two_sided], -ones[two_sided]]])
    res = milp(np.r_[np.zeros(n), 1.0], integrality=np.r_[np.ones(n), 0.0],
               constraints=LinearConstraint(rows, -np.inf, np.r_[f, -f[two_sided]]),
               bounds=(np.zeros(n + 1), np.ones(n + 1)),
               options={"time_limit": time_limit, "mip_rel_gap": 1e-6})
    dual = getattr(res, "mip_dual_bound", None)
    if res.status not in (0, 1) or dual is None or not np.isfinite(dual):
        raise RuntimeError(f"HiGHS MILP failed: {res.message}")
    bound = max(0.0, dual * (1.0 - _RELATIVE) - _TOLERANCE * (n + 2))
    if res.x is None:
        return bound, None, np.inf
    return bound, np.round(res.x[:n]).astype(bool), float(res.x[-1])


def neuron_milp_bound_2d(w_star: object, pool: Pool, output_relu: bool = False,
                         cuts: CuttingPlanes | None = None, time_limit: float = 10.0,
                         start: object | None = None) -> MilpBound:
    """Lower bound on ``min_S sup |f - g_S|`` (or ``|f - relu(g_S)|``) by MILP, d = 2 (SPEC 4).

    At most ``cuts.max_rounds`` MILPs of at most ``time_limit`` seconds each; each adds up to
    ``max(cuts.points_per_round, N // 2)`` worst points of its incumbent. ``start`` (a mask)
    sets the first threshold to its error; by default the greedy subset's
    (:func:`~prune_jax.slth.local_search_2d` from the empty set). Exact to N ~ 64 in seconds;
    above, the time limit stops HiGHS and the dual bound is reported (still a lower bound).

    >>> import numpy as np
    >>> from prune_jax.slth import brute_force_2d
    >>> rng = np.random.default_rng(2)
    >>> w_star = rng.normal(size=2)
    >>> w_star = w_star / np.linalg.norm(w_star)
    >>> pool = Pool(rng.normal(size=(8, 2)), rng.normal(size=8))
    >>> res = neuron_milp_bound_2d(w_star, pool, output_relu=True)
    >>> best = brute_force_2d(w_star, pool, output_relu=True)  # all 2^8 subsets
    >>> res.optimal, round(res.lower, 4), round(res.subset.error, 4), round(best.error, 4)
    (True, 0.1546, 0.1546, 0.1546)
    """
    cuts = cuts or CuttingPlanes()
    w_star = np.asarray(w_star, np.float64)
    check_shape(w_star, (2,), "w_star (d = 2 only)")
    time_limit = check_positive(time_limit, "time_limit")
    pool = Pool(np.asarray(pool.w, np.float64), np.asarray(pool.alpha, np.float64))
    n = pool.w.shape[0]
    if start is None:
        best = local_search_2d(w_star, pool, None, output_relu)
    else:
        keep = np.asarray(start, bool)
        check_shape(keep, (n,), "start")
        best = Subset(keep, float(subset_errors_2d(w_star, pool, keep[None], output_relu)[0]), True)
    points = initial_points(jax.random.key(0), w_star, pool, cuts.initial_points)
    lower, rounds, eps0, lo, hi = 0.0, 0, best.error, 0.0, best.error

    def sides(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:  # f, two-sided at current eps0
        f = np.maximum(x @ w_star, 0.0)
        return f, (f > eps0 if output_relu else np.ones(f.shape, bool))

    while rounds < cuts.max_rounds and best.error > lower * (1 + cuts.rtol) + cuts.atol:
        rounds += 1
        bound, incumbent, value = _solve(features(pool, points), *sides(points), time_limit)
        lower = max(lower, min(eps0, bound) if output_relu else bound)
        added = 0
        if incumbent is not None:
            with jax.enable_x64(True):
                worst = worst_points(jax.random.key(0), w_star, neuron_net(pool, incumbent),
                                     output_relu, max(cuts.points_per_round, n // 2))
            if worst.values[0] < best.error:
                best = Subset(incumbent, float(worst.values[0]), True)
            # cut at the worst points where the incumbent exceeds its objective on the points
            x = worst.points
            (f, two_sided), h = sides(x), features(pool, x) @ incumbent
            excess = np.maximum(h - f, np.where(two_sided, f - h, -np.inf))
            new = x[excess > value + (value * cuts.rtol + cuts.atol)]
            points, added = np.concatenate([points, new]), len(new)
        if not output_relu:
            if added == 0:
                break
            continue
        # bound <= T(eps0) <= value and T is non-increasing: the crossing T = eps0 lies
        # in [eps0, value] if bound >= eps0, else (taking the bound as T) in [bound, eps0]
        hi = min(hi, best.error)
        lo, hi = ((max(lo, eps0), min(hi, value)) if bound >= eps0 else
                  (max(lo, bound), min(hi, eps0)))
        if added:  # more points can only raise T: of the upper ends only the subset's holds
            hi = best.error
            if bound < eps0:
                continue  # the same threshold again, on more points
        if hi <= lo * (1 + cuts.bisection_rtol):
            break
        eps0 = float(np.sqrt(max(lo, hi / 64) * hi))
    optimal = best.error <= lower * (1 + cuts.rtol) + cuts.atol
    return MilpBound(lower, best, bool(optimal), points, rounds)

