"""The exponential-gap sweep: required width per arm, per target and per eps (SPEC 4).

One seed = one target ``w*`` and one nested pool; each arm gives a curve of error bounds
against the width ``N`` (the first ``N`` units), and the required width for ``eps`` is read off:

* neuron arm, LOWER bound: ``1 + max{N : LB(N) > eps}``, valid because the best error is
  non-increasing in ``N`` (nested pools); censored past the largest width tried. In d = 2,
  ``LB`` is the larger of the LP and MILP bounds.
* neuron arm, best subset found: an achievable width (CERTIFIED UPPER bound in d = 2).
* weight arm, UPPER bound: the smallest ``N`` whose Pensia certificate is ``<= eps``.

Quantiles over seeds keep the guarantees: an order statistic is monotone in every entry.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from prune_jax.slth.networks import (
    Pool,
    WeightMask,
    pool_prefix,
    sample_pool,
    sample_target,
    weight_net,
)
from prune_jax.slth.neuron_lp import CuttingPlanes, neuron_lp_bound, neuron_lp_bound_output_relu
from prune_jax.slth.neuron_milp import neuron_milp_bound_2d
from prune_jax.slth.neuron_subsets import local_search_2d, rounded_subset
from prune_jax.slth.pensia import (
    PensiaTable,
    pensia_certificate,
    pensia_network,
    pensia_table,
    required_width,
)
from prune_jax.slth.supermask import SupermaskSearch, train_supermask
from prune_jax.slth.supnorm import SupEstimate, sup_error
from prune_jax.tree import Array
from prune_jax.validate import check_int, check_real

__all__ = ["CertificateCheck", "NeuronCurve", "Problem", "Quantiles", "WeightCurve", "WidthBound",
           "geometric_widths", "linear_slope", "loglog_slope", "lower_bound_width", "make_problem",
           "neuron_curve", "quantiles", "supermask_error", "upper_bound_width", "weight_curve",
           "weight_network_error"]


class Problem(NamedTuple):
    """One seed of the sweep: target ``w_star`` (d,) and a nested ``pool`` (float64)."""

    w_star: np.ndarray
    pool: Pool


class NeuronCurve(NamedTuple):
    """Neuron arm over ``widths``: ``lower`` bounds (the larger of ``lp_lower``, the CERTIFIED
    LP bound, and the MILP bound where it ran) and the errors of the best subsets ``found``.

    ``found_exact`` (d = 2): ``found`` are achievable errors, upper bounds on the best subset's.
    ``optimal``: the MILP closed the bracket at that width (``lower`` is the best error).
    """

    widths: np.ndarray
    lower: np.ndarray
    lp_lower: np.ndarray
    found: np.ndarray
    optimal: np.ndarray
    found_exact: bool
    output_relu: bool


class WeightCurve(NamedTuple):
    """Weight arm: the CERTIFIED ``certificate[N]`` for ``N = 0..P`` (inf past the table)."""

    certificate: np.ndarray
    table: PensiaTable


class CertificateCheck(NamedTuple):
    """``measured`` sup error (EXACT if ``exact``) <= ``certificate`` must hold."""

    measured: float
    certificate: float
    exact: bool


class WidthBound(NamedTuple):
    """CERTIFIED lower bound on a required width; ``censored``: limited by the widths tried."""

    width: int
    censored: bool


class Quantiles(NamedTuple):
    """Median and 90th percentile over seeds (order statistics; ``inf`` = not reached)."""

    median: float
    p90: float


def geometric_widths(max_width: int, first: int = 2, factor: float = 2**0.5) -> np.ndarray:
    """Distinct rounded widths ``first, first*factor, ...`` up to and including ``max_width``."""
    check_int(first, "first", low=1)
    max_width = check_int(max_width, "max_width", low=first)
    if factor <= 1.0:
        raise ValueError(f"factor must be > 1, got {factor}")
    n = int(np.floor(np.log(max_width / first) / np.log(factor) + 1e-9)) + 1
    widths = np.round(first * factor ** np.arange(n)).astype(int)
    return np.unique(np.append(widths[widths <= max_width], max_width))


def make_problem(key: Array, d: int, pool_size: int) -> Problem:
    """Target uniform on the sphere and a float64 pool of ``pool_size`` units (SPEC 4)."""
    key_target, key_pool = jax.random.split(key)
    with jax.enable_x64(True):
        w_star = sample_target(key_target, d)
        pool = sample_pool(key_pool, d, pool_size)
        return Problem(np.asarray(w_star), Pool(np.asarray(pool.w), np.asarray(pool.alpha)))


def neuron_curve(key: Array, problem: Problem, widths: object, output_relu: bool = False,
                 cuts: CuttingPlanes | None = None, n_random: int = 8,
                 search_max_width: int = 256, search_steps: int = 32, milp_max_width: int = 0,
                 milp_time_limit: float = 10.0, milp_rounds: int = 6) -> NeuronCurve:
    """Neuron-arm lower bounds and subsets found at every width of ``widths`` (SPEC 4).

    Bounds: the LP relaxation, and in d = 2 up to ``milp_max_width`` units the MILP bound
    (``milp_rounds`` solves of at most ``milp_time_limit`` s each). Subsets: the LP solution
    rounded (``n_random`` random roundings), in d = 2 up to ``search_max_width`` units
    ``search_steps`` of local search from it and from the empty set, and the MILP incumbents.
    In d > 2 the cut set of one width seeds the next.
    """
    widths = np.asarray(widths, int)
    if widths.ndim != 1 or widths.size == 0 or np.any(np.diff(widths) <= 0) or widths[0] < 1:
        raise ValueError(f"widths must be a non-empty increasing sequence of sizes >= 1, "
                         f"got {widths}")
    if widths[-1] > problem.pool.w.shape[0]:
        raise ValueError(f"widths go up to {widths[-1]} but the pool has "
                         f"{problem.pool.w.shape[0]} units")
    check_int(milp_max_width, "milp_max_width", low=0)
    milp_cuts = dataclasses.replace(cuts or CuttingPlanes(),
                                    max_rounds=check_int(milp_rounds, "milp_rounds", low=1))
    bound = neuron_lp_bound_output_relu if output_relu else neuron_lp_bound
    d = problem.w_star.shape[0]
    rows, points = [], None  # per width: LP bound, bound, error found, MILP optimal
    for n in widths:
        key, k_lp, k_round = jax.random.split(key, 3)
        pool = pool_prefix(problem.pool, int(n))
        lp = bound(k_lp, problem.w_star, pool, cuts, points)
        points = lp.points if d > 2 else None
        best = rounded_subset(k_round, problem.w_star, pool, lp.s, output_relu, n_random,
                              cuts.search if cuts is not None else None)
        if d == 2 and n <= search_max_width:
            best = min((local_search_2d(problem.w_star, pool, start, output_relu, search_steps)
                        for start in (best.keep, None)), key=lambda sub: sub.error)
        lower, optimal = lp.lower, False
        if d == 2 and n <= milp_max_width:
            milp = neuron_milp_bound_2d(problem.w_star, pool, output_relu, milp_cuts,
                                        milp_time_limit, start=best.keep)
            lower, optimal = max(lp.lower, milp.lower), milp.optimal
            best = min(best, milp.subset, key=lambda sub: sub.error)
        rows.append((lp.lower, lower, best.error, optimal))
    lp_lower, lower, found, optimal = (np.asarray(col) for col in zip(*rows, strict=True))
    # nested pools: a subset of the first n units is also a subset of any wider pool
    return NeuronCurve(widths, lower, lp_lower, np.minimum.accumulate(found), optimal, d == 2,
                       output_relu)


def weight_curve(problem: Problem, max_items: int = 28) -> WeightCurve:
    """Weight-arm certificate for every width of the pool (Pensia construction, SPEC 4)."""
    table = pensia_table(problem.w_star, problem.pool, max_items)
    return WeightCurve(pensia_certificate(table), table)


def weight_network_error(key: Array, problem: Problem, curve: WeightCurve,
                         width: int) -> CertificateCheck:
    """Measured sup error (EXACT in d = 2, else a lower estimate) and certificate of the
    constructed weight-pruned network (SPEC 4); the error must never exceed the certificate."""
    built = pensia_network(curve.table, width)
    net = weight_net(pool_prefix(problem.pool, width), built.mask)
    with jax.enable_x64(True):
        err = sup_error(key, problem.w_star, net, True)
    return CertificateCheck(err.value, built.certificate, err.exact)


def supermask_error(key: Array, problem: Problem, width: int,
                    search: SupermaskSearch) -> SupEstimate:
    """Sup error (EXACT in d = 2) of a trained supermask over the first ``width`` units.

    ILLUSTRATION of a practical algorithm; it bounds nothing.
    """
    key_train, key_eval = jax.random.split(key)
    pool = pool_prefix(problem.pool, width)
    with jax.enable_x64(True):
        mask = train_supermask(key_train, jnp.asarray(problem.w_star),
                               Pool(jnp.asarray(pool.w), jnp.asarray(pool.alpha)), search).mask
        mask = WeightMask(np.asarray(mask.hidden), np.asarray(mask.output))
        return sup_error(key_eval, problem.w_star, weight_net(pool, mask), search.output_relu)


def _check_eps(eps: float) -> float:
    if not 0.0 < check_real(eps, "eps") < 1.0:
        raise ValueError(f"eps must lie in (0, 1), got {float(eps)}")
    return float(eps)


def lower_bound_width(widths: object, lower: object, eps: float) -> WidthBound:
    """CERTIFIED lower bound on the required width: ``1 + max{N : LB(N) > eps}`` (``censored``
    when even the largest width tried has ``LB > eps``)."""
    _check_eps(eps)
    widths, lower = np.asarray(widths), np.asarray(lower)
    above = np.flatnonzero(lower > eps)
    if above.size == 0:
        return WidthBound(1, False)
    return WidthBound(int(widths[above[-1]]) + 1, bool(above[-1] == widths.size - 1))


def upper_bound_width(widths: object, errors: object, eps: float) -> int | None:
    """Smallest width whose (achievable) error is ``<= eps``; None when none of them reaches it."""
    return required_width(np.asarray(errors), _check_eps(eps), np.asarray(widths))


def quantiles(values: object) -> Quantiles:
    """Median and 90th percentile as order statistics (``inf``/None entries = not reached)."""
    v = np.asarray([np.inf if x is None else x for x in np.ravel(values)], np.float64)
    if v.size == 0:
        raise ValueError("values must not be empty")
    return Quantiles(*(float(q) for q in np.quantile(v, [0.5, 0.9], method="higher")))


def loglog_slope(x: object, y: object) -> float:
    """Least-squares slope of ``log y`` against ``log x`` over the finite positive pairs (``nan``
    if < 2): 1 against ``1/eps`` is the ``1/eps`` rate, near 0 is logarithmic growth."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    ok = (x > 0) & (y > 0)  # linear_slope drops the infinite logs
    return linear_slope(np.log(x[ok]), np.log(y[ok]))


def linear_slope(x: object, y: object) -> float:
    """Least-squares slope of ``y`` against ``x`` over the finite pairs (``nan`` if < 2)."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    ok = np.isfinite(x) & np.isfinite(y)
    if ok.sum() < 2:
        return float("nan")
    return float(np.polyfit(x[ok], y[ok], 1)[0])
