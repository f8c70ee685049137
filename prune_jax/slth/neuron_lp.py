"""Neuron arm: certified LOWER bounds on the best neuron subset by LP relaxation (SPEC 4).

Relax the 0/1 choice of kept units to ``s in [0, 1]^N``. On a finite set of points ``x_k`` of
the sphere, ``min_s max_k |f(x_k) - sum_i s_i alpha_i relu(<w_i, x_k>)|`` is a linear programme
whose value is below the sup error of every subset. Cutting planes add the worst points of the
relaxed solution's residual (a fixed grid plateaus). With the output ReLU,
``|f - relu(h)| <= eps`` is linear in ``s`` by a case split (``f > eps``:
``f - eps <= h <= f + eps``; else ``h <= f + eps``): the bound is the largest ``eps`` whose
feasibility LP is infeasible, found by bisection.

Every bound is a weak-duality bound recomputed in float64 from HiGHS's dual multipliers (any
``lambda >= 0`` gives ``min c.z >= -lambda.b + min_{box} (c + A^T lambda).z``): CERTIFIED up to
float64 rounding, whatever the solver's tolerances.
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

__all__ = ["CuttingPlanes", "LPBound", "features", "initial_points", "neuron_lp_bound",
           "neuron_lp_bound_output_relu"]

_INFEASIBLE_MARGIN = 1e-12  # a phase-1 bound above this certifies infeasibility


@dataclasses.dataclass(frozen=True)
class CuttingPlanes:
    """Options of the cutting-plane loop (SPEC 4).

    ``initial_points`` start the cut set (see :func:`initial_points`); every round adds up to
    ``max(points_per_round, N // 2)`` worst points of the relaxed residual, until its error is
    within ``rtol * bound + atol`` of the bound (HiGHS solves to about 1e-7) or ``max_rounds``.
    ``bisection_rtol``: precision of the output-ReLU bisection; ``search``: the d > 2 oracle.
    """

    initial_points: int = 64
    points_per_round: int = 32
    max_rounds: int = 40
    rtol: float = 1e-3
    atol: float = 1e-7
    bisection_rtol: float = 0.02
    search: SupSearch = dataclasses.field(default_factory=SupSearch)

    def __post_init__(self) -> None:
        for name in ("initial_points", "points_per_round", "max_rounds"):
            check_int(getattr(self, name), name, low=1)
        for name in ("rtol", "atol", "bisection_rtol"):
            check_positive(getattr(self, name), name)


class LPBound(NamedTuple):
    """Result of a neuron-arm relaxation: ``lower``, a CERTIFIED lower bound on every subset's
    sup error; ``relaxed_error``, the sup error of the relaxed solution ``s`` (exact in d = 2,
    where the relaxation's optimum lies in ``[lower, relaxed_error]``); ``points``, the final
    cut set (K, d), reusable as the start of a wider pool."""

    lower: float
    relaxed_error: float
    s: np.ndarray
    points: np.ndarray
    rounds: int


def features(pool: Pool, x: object) -> np.ndarray:
    """``A[k, i] = alpha_i relu(<w_i, x_k>)``: the network is ``A @ s`` at ``x``. Host float64
    numpy on purpose: these are the LP's data, and the certificate is about them."""
    x = np.asarray(x, np.float64)
    check_shape(x, (None, pool.w.shape[1]), "x")
    w, alpha = np.asarray(pool.w, np.float64), np.asarray(pool.alpha, np.float64)
    return alpha * np.maximum(x @ w.T, 0.0)


def initial_points(key: Array, w_star: object, pool: Pool, n: int) -> np.ndarray:
    """Start of the cut set: in d = 2 the kinks of the target and of every unit (angles
    ``atan2(w_i) +- pi/2``, where the corner maxima of every subset's residual lie) and ``n``
    equally spaced angles; in d > 2, ``n`` sphere samples."""
    w_star = np.asarray(w_star, np.float64)
    check_int(n, "n", low=1)
    d = check_int(w_star.shape[0], "d (len(w_star))", low=2)
    if d > 2:
        return np.asarray(sample_sphere(key, n, d), np.float64)
    u = np.concatenate([np.asarray(pool.w, np.float64), w_star[None]])
    phi = np.arctan2(u[:, 1], u[:, 0])
    theta = np.concatenate([phi + np.pi / 2, phi - np.pi / 2, np.arange(n) * (2 * np.pi / n)])
    return np.stack([np.cos(theta), np.sin(theta)], axis=1)


def _relaxation(w_star: np.ndarray, pool: Pool, points: np.ndarray,
                eps: float | None = None) -> tuple[np.ndarray, float, float]:
    """``min t`` over ``s in [0,1]^N, t >= 0`` (HiGHS): ``s``, ``t`` and a CERTIFIED lower bound.
    ``eps`` None: ``|f - A s| <= t``; else phase 1 of ``|f - relu(A s)| <= eps``:
    ``A s <= f + eps + t``, and ``A s >= f - eps - t`` where ``f > eps``."""
    a, f = features(pool, points), np.maximum(points @ w_star, 0.0)
    upper, lower, two = ((f, f, np.ones(f.shape, bool)) if eps is None else
                         (f + eps, f - eps, f > eps))
    ones = np.ones((a.shape[0], 1))
    a_ub = np.block([[a, -ones], [-a[two], -ones[two]]])
    b_ub = np.concatenate([upper, -lower[two]])
    n = a.shape[1]
    res = linprog(np.r_[np.zeros(n), 1.0], A_ub=a_ub, b_ub=b_ub,
                  bounds=[(0.0, 1.0)] * n + [(0.0, None)], method="highs")
    if res.status != 0:
        raise RuntimeError(f"HiGHS failed on the relaxation: {res.message}")
    # Weak duality for min t s.t. a_ub @ (s, t) <= b_ub, s in [0,1]^N, t >= 0.
    lam = np.maximum(-res.ineqlin.marginals, 0.0)  # scipy reports d(objective)/d(b_ub) <= 0
    total = lam.sum()
    if total > 1.0:  # the reduced cost of t must stay >= 0 (t is unbounded above)
        lam = lam / total
    bound = float(-lam @ b_ub + np.minimum(a_ub[:, :-1].T @ lam, 0.0).sum())
    return res.x[:-1], float(res.x[-1]), bound


def _start(key: Array, w_star: object, pool: Pool, cuts: CuttingPlanes | None,
           points: object | None) -> tuple[Array, CuttingPlanes, np.ndarray, Pool, np.ndarray]:
    """Validate; the options, float64 host copies of ``w_star`` and ``pool``, the cut set."""
    cuts = cuts or CuttingPlanes()
    w_star = np.asarray(w_star, np.float64)
    check_shape(w_star, (None,), "w_star")
    d = check_int(w_star.shape[0], "d (len(w_star))", low=2)
    check_shape(pool.w, (None, d), "pool.w")
    check_shape(pool.alpha, (pool.w.shape[0],), "pool.alpha")
    pool = Pool(np.asarray(pool.w, np.float64), np.asarray(pool.alpha, np.float64))
    points = np.zeros((0, d)) if points is None else np.asarray(points, np.float64)
    check_shape(points, (None, d), "points")
    key, sub = jax.random.split(key)
    points = np.concatenate([points, initial_points(sub, w_star, pool, cuts.initial_points)])
    return key, cuts, w_star, pool, points


def _cutting_planes(key: Array, w_star: np.ndarray, pool: Pool, points: np.ndarray,
                    cuts: CuttingPlanes, eps: float | None = None
                    ) -> tuple[float, np.ndarray, np.ndarray, float, int]:
    """Solve the relaxation (``eps`` None) or the phase-1 LP at ``eps``, add the worst points
    of its residual that it violates, repeat. Returns the CERTIFIED bound (phase 1: above
    ``_INFEASIBLE_MARGIN`` certifies infeasibility), ``s``, the cut set, the oracle's sup error
    of ``s`` (inf if never evaluated) and the rounds."""
    lower, error, s, rounds = 0.0, np.inf, np.zeros(pool.w.shape[0]), 0
    per_round = max(cuts.points_per_round, pool.w.shape[0] // 2)
    while rounds < cuts.max_rounds:
        rounds += 1
        s, t, bound = _relaxation(w_star, pool, points, eps)
        lower = max(lower, bound)
        if eps is not None and lower > _INFEASIBLE_MARGIN:
            break
        key, sub = jax.random.split(key)
        with jax.enable_x64(True):  # the oracle in float64
            worst = worst_points(sub, w_star, neuron_net(pool, s), eps is not None, per_round,
                                 cuts.search)
        error = float(worst.values[0])
        goal, level = (lower, t) if eps is None else (eps, eps + t)
        if error <= goal * (1.0 + cuts.rtol) + cuts.atol or not np.any(worst.values > level):
            break
        points = np.concatenate([points, worst.points[worst.values > level]])
    return lower, s, points, error, rounds


def neuron_lp_bound(key: Array, w_star: object, pool: Pool, cuts: CuttingPlanes | None = None,
                    points: object | None = None) -> LPBound:
    """CERTIFIED LOWER bound on ``min_S sup |f - g_S|`` over neuron subsets S (SPEC 4).

    Network without output ReLU. ``points`` (optional) seed the cut set, e.g. the final cuts of a
    narrower pool. ``key`` drives the d > 2 oracle.
    """
    key, cuts, w_star, pool, points = _start(key, w_star, pool, cuts, points)
    lower, s, points, error, rounds = _cutting_planes(key, w_star, pool, points, cuts)
    return LPBound(lower, error, np.asarray(s), points, rounds)


def neuron_lp_bound_output_relu(key: Array, w_star: object, pool: Pool,
                                cuts: CuttingPlanes | None = None,
                                points: object | None = None,
                                floor: float = 1e-7) -> LPBound:
    """CERTIFIED LOWER bound on ``min_S sup |f - relu(g_S)|`` (output ReLU; SPEC 4).

    Geometric bisection of ``eps`` on the feasibility LP with cutting planes: ``lower`` is the
    largest ``eps`` proven infeasible (0 if none above ``floor``).
    """
    key, cuts, w_star, pool, points = _start(key, w_star, pool, cuts, points)
    check_positive(floor, "floor")
    lower, upper = 0.0, 1.0  # s = 0 has error max f = 1 <= upper
    s_best, error_best, rounds = np.zeros(pool.w.shape[0]), 1.0, 0
    while upper > max(lower, floor) * (1.0 + cuts.bisection_rtol):
        eps = float(np.sqrt(max(lower, floor) * upper))
        key, sub = jax.random.split(key)
        bound, s, points, error, _ = _cutting_planes(sub, w_star, pool, points, cuts, eps)
        rounds += 1
        if bound <= _INFEASIBLE_MARGIN:  # undecided counts as feasible: the bound stays valid
            upper, s_best, error_best = eps, s, error
        else:
            lower = eps
    return LPBound(lower, error_best, np.asarray(s_best), points, rounds)
