"""Neuron arm: certified LOWER bounds on the best neuron subset by LP relaxation (SPEC 4).

Relax the 0/1 choice of kept units to ``s in [0, 1]^N``. On any finite set of points ``x_k`` of
the sphere, ``min_s max_k |f(x_k) - sum_i s_i alpha_i relu(<w_i, x_k>)|`` is a linear programme
whose value is below the sup error of every subset (subsets are feasible ``s``, and a finite
set sees less than the whole sphere). Points are added by cutting planes: evaluate the residual
of the relaxed solution, add its worst points, repeat (a fixed grid plateaus).

With the output ReLU, ``|f - relu(h)| <= eps`` is linear in ``s`` by a case split
(``f > eps``: ``f - eps <= h <= f + eps``; else ``h <= f + eps``), so the bound is the largest
``eps`` whose feasibility LP is infeasible, found by bisection.

Certification does not trust the solver's tolerances: every bound is a weak-duality bound
recomputed in float64 from HiGHS's dual multipliers (any ``lambda >= 0`` gives
``min c.z >= -lambda.b + min_{box} (c + A^T lambda).z``), so it is CERTIFIED up to float64
rounding of one matrix-vector product. The LPs are solved by scipy's HiGHS.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import numpy as np
from scipy.optimize import linprog

from prune_jax.slth.networks import Pool, neuron_net, sample_sphere
from prune_jax.slth.supnorm import SupSearch, worst_points
from prune_jax.tree import Array
from prune_jax.validate import check_int, check_positive, check_shape

__all__ = [
    "CuttingPlanes",
    "LPBound",
    "features",
    "initial_points",
    "neuron_lp_bound",
    "neuron_lp_bound_output_relu",
]

_INFEASIBLE_MARGIN = 1e-12  # a phase-1 bound above this certifies infeasibility


@dataclasses.dataclass(frozen=True)
class CuttingPlanes:
    """Options of the cutting-plane loop (SPEC 4).

    ``initial_points`` start the point set (with all kinks, equally spaced angles in d = 2;
    sphere samples otherwise); every round adds up to ``max(points_per_round, N // 2)`` of the
    worst points of the relaxed residual; it stops when the relaxed solution's error is within
    ``rtol * bound + atol`` of the bound (HiGHS solves to about 1e-7) or after
    ``max_rounds``. ``bisection_rtol`` is the relative precision of the output-ReLU bisection.
    ``search`` is the d > 2 worst-point oracle.
    """

    initial_points: int = 64
    points_per_round: int = 32
    max_rounds: int = 40
    rtol: float = 1e-3
    atol: float = 1e-7
    bisection_rtol: float = 0.02
    search: SupSearch = dataclasses.field(default_factory=SupSearch)

    def __post_init__(self) -> None:
        check_int(self.initial_points, "initial_points", low=1)
        check_int(self.points_per_round, "points_per_round", low=1)
        check_int(self.max_rounds, "max_rounds", low=1)
        check_positive(self.rtol, "rtol")
        check_positive(self.atol, "atol")
        check_positive(self.bisection_rtol, "bisection_rtol")


class LPBound(NamedTuple):
    """Result of a neuron-arm relaxation.

    ``lower``: CERTIFIED lower bound on the sup error of every subset of the pool's units.
    ``relaxed_error``: sup error of the relaxed solution ``s`` (exact in d = 2, a lower estimate
    otherwise); in d = 2 the relaxation's own optimum lies in ``[lower, relaxed_error]``.
    ``points``: the final cut set (K, d), reusable as the start of a wider pool.
    """

    lower: float
    relaxed_error: float
    s: np.ndarray
    points: np.ndarray
    rounds: int


def features(pool: Pool, x: object) -> np.ndarray:
    """``A[k, i] = alpha_i relu(<w_i, x_k>)`` in float64: the network is ``A @ s`` at ``x``.

    Host-side numpy on purpose: these are the LP's data, and the certificate is about them.
    SPEC 4.
    """
    x = np.asarray(x, np.float64)
    check_shape(x, (None, pool.w.shape[1]), "x")
    w, alpha = np.asarray(pool.w, np.float64), np.asarray(pool.alpha, np.float64)
    return alpha * np.maximum(x @ w.T, 0.0)


def initial_points(key: Array, w_star: object, pool: Pool, n: int) -> np.ndarray:
    """Start of the cut set.

    d = 2: the kinks of the target and of every unit (angles ``atan2(w_i) +- pi/2``, where the
    corner maxima of every subset's residual lie) and ``n`` equally spaced angles. d > 2: ``n``
    sphere samples.
    SPEC 4.
    """
    w_star = np.asarray(w_star, np.float64)
    check_int(n, "n", low=1)
    d = check_int(w_star.shape[0], "d (len(w_star))", low=2)
    if d > 2:
        return np.asarray(sample_sphere(key, n, d), np.float64)
    u = np.concatenate([np.asarray(pool.w, np.float64), w_star[None]])
    phi = np.arctan2(u[:, 1], u[:, 0])
    theta = np.concatenate([phi + np.pi / 2, phi - np.pi / 2, np.arange(n) * (2 * np.pi / n)])
    return np.stack([np.cos(theta), np.sin(theta)], axis=1)


def _dual_bound(a_ub: np.ndarray, b_ub: np.ndarray, multipliers: np.ndarray) -> float:
    """Weak-duality bound of ``min t s.t. a_ub @ (s, t) <= b_ub, s in [0,1]^N, t >= 0``."""
    lam = np.maximum(-multipliers, 0.0)  # scipy reports d(objective)/d(b_ub) <= 0
    total = lam.sum()
    if total > 1.0:  # the reduced cost of t must stay >= 0 (t is unbounded above)
        lam = lam / total
    reduced = a_ub[:, :-1].T @ lam
    return float(-lam @ b_ub + np.minimum(reduced, 0.0).sum())


class _Solution(NamedTuple):
    s: np.ndarray
    t: float
    bound: float  # certified lower bound on the LP optimum
    active: np.ndarray  # per point: does a constraint of this point carry a dual multiplier?


def _solve_min_t(a_ub: np.ndarray, b_ub: np.ndarray, row_point: np.ndarray,
                 n_points: int) -> _Solution:
    """``min t`` over ``(s, t)`` subject to ``a_ub @ (s, t) <= b_ub`` (HiGHS)."""
    n = a_ub.shape[1] - 1
    cost = np.zeros(n + 1)
    cost[-1] = 1.0
    res = linprog(cost, A_ub=a_ub, b_ub=b_ub, bounds=[(0.0, 1.0)] * n + [(0.0, None)],
                  method="highs")
    if res.status != 0:
        raise RuntimeError(f"HiGHS failed on the relaxation: {res.message}")
    marginals = res.ineqlin.marginals
    active = np.zeros(n_points, bool)
    np.logical_or.at(active, row_point, marginals < 0)
    return _Solution(res.x[:-1], float(res.x[-1]), _dual_bound(a_ub, b_ub, marginals), active)


def _minimax_lp(a: np.ndarray, f: np.ndarray) -> _Solution:
    """``min t`` s.t. ``|f - A s| <= t``, i.e. ``A s - t <= f`` and ``-A s - t <= -f``."""
    ones = np.ones((a.shape[0], 1))
    rows = np.arange(a.shape[0])
    return _solve_min_t(np.block([[a, -ones], [-a, -ones]]), np.concatenate([f, -f]),
                        np.concatenate([rows, rows]), a.shape[0])


def _feasibility_lp(a: np.ndarray, f: np.ndarray, eps: float) -> _Solution:
    """Phase 1 of ``|f - relu(A s)| <= eps``: ``min t`` with every constraint relaxed by ``t``."""
    ones = np.ones((a.shape[0], 1))
    high = f > eps
    rows = np.arange(a.shape[0])
    return _solve_min_t(np.block([[a, -ones], [-a[high], -ones[high]]]),
                        np.concatenate([f + eps, eps - f[high]]),
                        np.concatenate([rows, rows[high]]), a.shape[0])


def _target_values(w_star: np.ndarray, x: np.ndarray) -> np.ndarray:
    return np.maximum(x @ w_star, 0.0)


def _checked(w_star: object, pool: Pool,
             points: object | None) -> tuple[np.ndarray, Pool, np.ndarray]:
    """Validate; return float64 host copies of ``w_star``, ``pool`` and the points."""
    w_star = np.asarray(w_star, np.float64)
    check_shape(w_star, (None,), "w_star")
    check_int(w_star.shape[0], "d (len(w_star))", low=2)
    check_shape(pool.w, (None, w_star.shape[0]), "pool.w")
    check_shape(pool.alpha, (pool.w.shape[0],), "pool.alpha")
    pool = Pool(np.asarray(pool.w, np.float64), np.asarray(pool.alpha, np.float64))
    if points is None:
        return w_star, pool, np.zeros((0, w_star.shape[0]))
    points = np.asarray(points, np.float64)
    check_shape(points, (None, w_star.shape[0]), "points")
    return w_star, pool, points


def _oracle(key: Array, w_star: np.ndarray, pool: Pool, s: np.ndarray, output_relu: bool,
            k: int, search: SupSearch) -> tuple[np.ndarray, np.ndarray]:
    """Worst points of the relaxed residual, in float64 (x64 enabled locally)."""
    with jax.enable_x64(True):
        worst = worst_points(key, w_star, neuron_net(pool, s), output_relu, k, search)
    return worst.values, worst.points


def _add_points(points: np.ndarray, new: np.ndarray) -> np.ndarray:
    return np.concatenate([points, np.asarray(new, np.float64)])


def neuron_lp_bound(key: Array, w_star: object, pool: Pool, cuts: CuttingPlanes | None = None,
                    points: object | None = None) -> LPBound:
    """CERTIFIED LOWER bound on ``min_S sup |f - g_S|`` over neuron subsets S (SPEC 4).

    Network without output ReLU. ``points`` (optional) seed the cut set, e.g. the final cuts of a
    narrower pool. ``key`` drives the d > 2 oracle.
    """
    cuts = CuttingPlanes() if cuts is None else cuts
    w_star, pool, points = _checked(w_star, pool, points)
    n = pool.w.shape[0]
    key, sub = jax.random.split(key)
    points = _add_points(points, initial_points(sub, w_star, pool, cuts.initial_points))
    per_round = max(cuts.points_per_round, n // 2)
    lower, relaxed_error, s, rounds = 0.0, np.inf, np.zeros(n), 0
    while rounds < cuts.max_rounds:
        rounds += 1
        sol = _minimax_lp(features(pool, points), _target_values(w_star, points))
        s, lower = sol.s, max(lower, sol.bound)
        key, sub = jax.random.split(key)
        values, new = _oracle(sub, w_star, pool, s, False, per_round, cuts.search)
        relaxed_error = float(values[0])
        if relaxed_error <= lower * (1.0 + cuts.rtol) + cuts.atol or not np.any(values > sol.t):
            break
        points = _add_points(points, new[values > sol.t])
    return LPBound(lower, relaxed_error, np.asarray(s), points, rounds)


class _Feasibility(NamedTuple):
    feasible: bool  # False is certified; True may also mean "undecided"
    s: np.ndarray
    points: np.ndarray
    error: float  # sup error of relu(A s) found by the oracle (inf if never evaluated)


def _feasible(key: Array, w_star: np.ndarray, pool: Pool, eps: float, points: np.ndarray,
              cuts: CuttingPlanes, per_round: int) -> _Feasibility:
    """Is ``|f - relu(A s)| <= eps`` feasible? (certified when it answers False)."""
    s, error = np.zeros(pool.w.shape[0]), np.inf
    for _ in range(cuts.max_rounds):
        sol = _feasibility_lp(features(pool, points), _target_values(w_star, points), eps)
        s = sol.s
        if sol.bound > _INFEASIBLE_MARGIN:
            return _Feasibility(False, s, points, error)
        key, sub = jax.random.split(key)
        values, new = _oracle(sub, w_star, pool, s, True, per_round, cuts.search)
        error = float(values[0])
        if error <= eps * (1.0 + cuts.rtol) + cuts.atol or not np.any(values > eps + sol.t):
            return _Feasibility(True, s, points, error)
        points = _add_points(points, new[values > eps + sol.t])
    # undecided counts as feasible: the bound only gets looser, it stays certified
    return _Feasibility(True, s, points, error)


def neuron_lp_bound_output_relu(key: Array, w_star: object, pool: Pool,
                                cuts: CuttingPlanes | None = None,
                                points: object | None = None,
                                floor: float = 1e-7) -> LPBound:
    """CERTIFIED LOWER bound on ``min_S sup |f - relu(g_S)|`` (output ReLU; SPEC 4).

    Geometric bisection of ``eps`` on the feasibility LP with cutting planes: ``lower`` is the
    largest ``eps`` proven infeasible (0 if none above ``floor``).
    """
    cuts = CuttingPlanes() if cuts is None else cuts
    w_star, pool, points = _checked(w_star, pool, points)
    check_positive(floor, "floor")
    n = pool.w.shape[0]
    key, sub = jax.random.split(key)
    points = _add_points(points, initial_points(sub, w_star, pool, cuts.initial_points))
    per_round = max(cuts.points_per_round, n // 2)
    lower, upper = 0.0, 1.0  # s = 0 has error max f = 1 <= upper
    s_best, error_best, rounds = np.zeros(n), 1.0, 0
    while upper > max(lower, floor) * (1.0 + cuts.bisection_rtol):
        eps = float(np.sqrt(max(lower, floor) * upper))
        key, sub = jax.random.split(key)
        result = _feasible(sub, w_star, pool, eps, points, cuts, per_round)
        points, rounds = result.points, rounds + 1
        if result.feasible:
            upper, s_best, error_best = eps, result.s, result.error
        else:
            lower = eps
        if upper <= floor:
            break
    return LPBound(lower, error_best, np.asarray(s_best), points, rounds)
