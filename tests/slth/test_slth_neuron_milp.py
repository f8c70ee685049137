"""Neuron arm (SPEC 4): the MILP lower bound against brute force over all subsets and the LP."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from prune_jax.slth.networks import Pool
from prune_jax.slth.neuron_lp import CuttingPlanes, neuron_lp_bound, neuron_lp_bound_output_relu
from prune_jax.slth.neuron_milp import neuron_milp_bound_2d
from prune_jax.slth.neuron_subsets import brute_force_2d, local_search_2d, subset_errors_2d
from prune_jax.slth.sweep import Problem, neuron_curve

BISECTION = CuttingPlanes().bisection_rtol


def _problem(seed: int, n: int) -> tuple[np.ndarray, Pool]:
    rng = np.random.default_rng(seed)
    w_star = rng.normal(size=2)
    return w_star / np.linalg.norm(w_star), Pool(rng.normal(size=(n, 2)), rng.normal(size=n))


def _lp(w_star: np.ndarray, pool: Pool, output_relu: bool) -> float:
    bound = neuron_lp_bound_output_relu if output_relu else neuron_lp_bound
    return bound(jax.random.key(0), w_star, pool).lower


@pytest.mark.parametrize("output_relu", [False, True])
def test_bound_never_exceeds_brute_force(output_relu: bool) -> None:
    """All 2^N subsets, N = 6, 9, 12, 6 pools each: bound <= optimum <= subset found, and the
    bound is the optimum up to the bisection tolerance (the MILP solves these exactly)."""
    gains = []
    for seed in range(6):
        for n in (6, 9, 12):
            w_star, pool = _problem(100 * seed + n, n)
            best = brute_force_2d(w_star, pool, output_relu)
            milp = neuron_milp_bound_2d(w_star, pool, output_relu)
            assert milp.lower <= best.error + 1e-12
            assert milp.subset.error >= best.error - 1e-12
            assert milp.lower >= best.error * (1 - BISECTION) - 1e-6
            if milp.optimal:
                assert milp.subset.error == pytest.approx(best.error, rel=1e-3, abs=1e-7)
            lp = _lp(w_star, pool, output_relu)
            assert max(lp, milp.lower) <= best.error + 1e-12
            gains.append(milp.lower - lp)
    # the MILP is never much below the LP, and above it on most pools
    assert min(gains) >= -BISECTION and np.mean(np.asarray(gains) > 1e-3) >= 1 / 3


def test_optimum_and_subset_agree() -> None:
    w_star, pool = _problem(3, 24)
    milp = neuron_milp_bound_2d(w_star, pool)
    assert milp.optimal
    assert milp.lower <= milp.subset.error <= local_search_2d(w_star, pool).error + 1e-9
    assert subset_errors_2d(w_star, pool, milp.subset.keep[None])[0] == pytest.approx(
        milp.subset.error)
    assert _lp(w_star, pool, False) <= milp.subset.error + 1e-12


def test_output_relu_bound_is_much_tighter_than_the_lp() -> None:
    """N = 24: the LP certifies 0.029, the MILP finds the best subset, error 0.18."""
    w_star, pool = _problem(2, 24)
    lp = _lp(w_star, pool, True)
    milp = neuron_milp_bound_2d(w_star, pool, True)
    assert milp.optimal and milp.lower >= 5 * lp
    assert milp.lower <= milp.subset.error <= milp.lower * (1 + 1e-3) + 1e-7


def test_time_limit_still_gives_a_bound() -> None:
    """One round stopped after 0.02 s: the dual bound is still below the subsets found."""
    w_star, pool = _problem(5, 32)
    milp = neuron_milp_bound_2d(w_star, pool, True, CuttingPlanes(max_rounds=1), time_limit=0.02,
                                start=np.zeros(32, bool))
    assert milp.rounds == 1
    assert 0.0 <= milp.lower <= milp.subset.error


def test_curve_takes_the_larger_bound() -> None:
    problem = Problem(*_problem(7, 24))
    curve = neuron_curve(jax.random.key(0), problem, [4, 8, 16, 24], True, search_steps=8,
                         milp_max_width=16)
    assert np.all(curve.lower >= curve.lp_lower)
    assert np.all(curve.lower[:3] > curve.lp_lower[:3]) or np.all(curve.optimal[:3])
    assert curve.lower[-1] == curve.lp_lower[-1] and not curve.optimal[-1]  # above the MILP width
    assert np.all(curve.lower <= curve.found + 1e-12)


def test_bad_input_names_the_argument() -> None:
    w_star, pool = _problem(0, 4)
    with pytest.raises(ValueError, match="d = 2"):
        neuron_milp_bound_2d(np.ones(3) / np.sqrt(3), Pool(np.ones((2, 3)), np.ones(2)))
    with pytest.raises(ValueError, match="time_limit"):
        neuron_milp_bound_2d(w_star, pool, time_limit=0.0)
    with pytest.raises(ValueError, match="start"):
        neuron_milp_bound_2d(w_star, pool, start=np.ones(5, bool))
