"""Neuron arm (SPEC 4): certified LP lower bounds against every subset we can evaluate.

The MILP bound and its checks against brute force are in ``test_slth_neuron_milp.py``.
"""

from __future__ import annotations

import jax
import numpy as np
import pytest
from scipy.optimize import linprog

from prune_jax.slth.networks import Pool
from prune_jax.slth.neuron_lp import (
    CuttingPlanes,
    features,
    initial_points,
    neuron_lp_bound,
    neuron_lp_bound_output_relu,
)
from prune_jax.slth.neuron_subsets import (
    brute_force_2d,
    local_search_2d,
    random_subsets_2d,
    rounded_subset,
)
from prune_jax.slth.supnorm import SupSearch

FAST = SupSearch(n_samples=1024, ascent_starts=16, ascent_steps=24)


def _problem(seed: int, d: int, n: int) -> tuple[np.ndarray, Pool]:
    rng = np.random.default_rng(seed)
    w_star = rng.normal(size=d)
    return w_star / np.linalg.norm(w_star), Pool(rng.normal(size=(n, d)), rng.normal(size=n))


@pytest.mark.parametrize("output_relu", [False, True])
@pytest.mark.parametrize("seed", range(3))
def test_lp_bound_never_exceeds_any_subset_tried(seed: int, output_relu: bool) -> None:
    """Random, greedy, rounded, local-search and the brute-force optimum (N = 12), d = 2."""
    w_star, pool = _problem(seed, 2, 12)
    key = jax.random.key(seed)
    bound_fn = neuron_lp_bound_output_relu if output_relu else neuron_lp_bound
    lp = bound_fn(key, w_star, pool)
    random_errors = random_subsets_2d(key, w_star, pool, 64, output_relu).errors
    greedy = local_search_2d(w_star, pool, None, output_relu)
    rounded = rounded_subset(key, w_star, pool, lp.s, output_relu)
    polished = local_search_2d(w_star, pool, rounded.keep, output_relu)
    best = brute_force_2d(w_star, pool, output_relu)
    tried = [*random_errors, greedy.error, rounded.error, polished.error, best.error]
    assert lp.lower <= min(tried) + 1e-12
    assert best.error <= min(tried) + 1e-12  # brute force is the optimum
    # the relaxation's own value lies in [lower, relaxed_error] (exact oracle in d = 2)
    assert lp.lower <= lp.relaxed_error + 1e-12


def test_certified_bound_below_solver_value() -> None:
    """The weak-duality bound never exceeds the LP optimum HiGHS reports on the same cuts."""
    w_star, pool = _problem(4, 2, 16)
    lp = neuron_lp_bound(jax.random.key(0), w_star, pool, CuttingPlanes(max_rounds=1))
    a = features(pool, lp.points)
    f = np.maximum(lp.points @ w_star, 0.0)
    n = a.shape[1]
    ones = np.ones((a.shape[0], 1))
    res = linprog(np.r_[np.zeros(n), 1.0], A_ub=np.block([[a, -ones], [-a, -ones]]),
                  b_ub=np.r_[f, -f], bounds=[(0, 1)] * n + [(0, None)], method="highs")
    assert lp.lower <= res.fun + 1e-12
    assert lp.lower >= res.fun - 1e-7  # and it is tight up to the solver tolerance


@pytest.mark.parametrize("output_relu", [False, True])
def test_analytic_pools(output_relu: bool) -> None:
    w_star = np.array([0.6, 0.8])
    bound_fn = neuron_lp_bound_output_relu if output_relu else neuron_lp_bound
    key = jax.random.key(0)
    # the target is in the pool: error 0 is achievable, the bound must be ~0
    exact = Pool(np.array([[0.6, 0.8], [1.0, -2.0]]), np.array([1.0, 0.5]))
    assert bound_fn(key, w_star, exact).lower <= 1e-7
    # one antiparallel unit: keeping it or not, the error is 1 (f - g = <w*, x> or f)
    anti = Pool(np.array([[-0.6, -0.8]]), np.array([1.0]))
    assert bound_fn(key, w_star, anti).lower == pytest.approx(1.0, rel=0.03)


def test_bound_in_higher_d_is_below_subsets() -> None:
    """d = 4: the bound is certified; subsets' errors are lower estimates, still above it."""
    w_star, pool = _problem(5, 4, 16)
    # (shapes shared with the other d = 4 tests: one compilation of the search)
    cuts = CuttingPlanes(max_rounds=3, points_per_round=8, search=FAST, bisection_rtol=0.2)
    lp = neuron_lp_bound(jax.random.key(0), w_star, pool, cuts)
    rounded = rounded_subset(jax.random.key(1), w_star, pool, lp.s, n_random=3, search=FAST)
    assert not rounded.exact
    assert 0.0 < lp.lower <= rounded.error + 1e-12
    relu = neuron_lp_bound_output_relu(jax.random.key(0), w_star, pool, cuts)
    assert 0.0 <= relu.lower <= rounded_subset(jax.random.key(1), w_star, pool, relu.s, True,
                                               n_random=3, search=FAST).error + 1e-12


def test_initial_points_contain_the_kinks() -> None:
    w_star, pool = _problem(0, 2, 5)
    pts = initial_points(jax.random.key(0), w_star, pool, 8)
    assert pts.shape == (2 * 6 + 8, 2)
    np.testing.assert_allclose(np.linalg.norm(pts, axis=1), 1.0)
    # every unit's kink direction is orthogonal to it
    for w in pool.w:
        assert np.min(np.abs(pts @ w)) <= 1e-12


def test_bad_input_names_the_argument() -> None:
    w_star, pool = _problem(0, 2, 4)
    key = jax.random.key(0)
    with pytest.raises(ValueError, match="points"):
        neuron_lp_bound(key, w_star, pool, points=np.ones((3, 3)))
    with pytest.raises(ValueError, match=r"pool\.w"):
        neuron_lp_bound(key, np.ones(3) / np.sqrt(3), pool)
    with pytest.raises(ValueError, match="max_rounds"):
        CuttingPlanes(max_rounds=0)
    with pytest.raises(ValueError, match="floor"):
        neuron_lp_bound_output_relu(key, w_star, pool, floor=0.0)
    with pytest.raises(ValueError, match="d = 2"):
        brute_force_2d(np.ones(3), Pool(np.ones((2, 3)), np.ones(2)))
    with pytest.raises(ValueError, match="pool size"):
        brute_force_2d(w_star, Pool(np.ones((17, 2)), np.ones(17)))
