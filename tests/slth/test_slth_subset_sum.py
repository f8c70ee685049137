"""Meet-in-the-middle subset sum (SPEC 4, weight arm) against brute force."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from prune_jax.slth.subset_sum import subset_sum, subset_sum_brute_force


@pytest.mark.parametrize("n", range(1, 17))
def test_mitm_equals_brute_force_up_to_16_items(n: int) -> None:
    rng = np.random.default_rng(n)
    values = rng.normal(size=(6, n)) * rng.normal(size=(6, n))  # products, as alpha_i * w_ij
    target = rng.uniform(-1.0, 1.0, size=6)
    mitm = subset_sum(values, target)
    brute = subset_sum_brute_force(values, target)
    np.testing.assert_allclose(np.abs(mitm.residual), np.abs(brute.residual), rtol=0, atol=1e-12)
    # the reported subset really has the reported residual
    np.testing.assert_allclose((values * mitm.chosen).sum(-1) - target, mitm.residual,
                               rtol=0, atol=1e-12)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(-3, 3, allow_nan=False), min_size=1, max_size=12),
       st.floats(-3, 3, allow_nan=False))
def test_mitm_equals_brute_force_property(values: list[float], target: float) -> None:
    mitm = subset_sum(values, target)
    brute = subset_sum_brute_force(values, target)
    assert abs(abs(mitm.residual) - abs(brute.residual)) <= 1e-12
    assert abs(np.dot(values, mitm.chosen) - target - mitm.residual) <= 1e-12


def test_exact_instance_and_empty_subset() -> None:
    best = subset_sum([1.0, 2.0, 4.0, 8.0], 11.0)
    assert best.residual == 0.0
    assert best.chosen.tolist() == [True, True, False, True]
    # a target that no item helps: the empty subset, residual -target
    none = subset_sum([5.0, 7.0], 0.1)
    assert not none.chosen.any() and none.residual == pytest.approx(-0.1)


def test_batch_shapes_are_kept() -> None:
    rng = np.random.default_rng(0)
    best = subset_sum(rng.normal(size=(3, 2, 9)), rng.normal(size=(3, 2)))
    assert best.residual.shape == (3, 2) and best.chosen.shape == (3, 2, 9)
    single = subset_sum(rng.normal(size=9), 0.5)
    assert single.residual.shape == () and single.chosen.shape == (9,)


def test_float64_resolution() -> None:
    # 2^-40 apart: only float64 (not float32) can resolve this residual
    values = np.array([1.0, 2.0**-40, 0.5])
    best = subset_sum(values, 1.0 + 2.0**-40)
    assert best.residual == 0.0 and best.chosen.tolist() == [True, True, False]


def test_bad_input_names_the_argument() -> None:
    with pytest.raises(ValueError, match="max_items"):
        subset_sum(np.ones(20), 1.0, max_items=16)
    with pytest.raises(ValueError, match="target"):
        subset_sum(np.ones((2, 4)), np.ones(3))
    with pytest.raises(ValueError, match="finite"):
        subset_sum([1.0, np.nan], 1.0)
    with pytest.raises(ValueError, match="values"):
        subset_sum(1.0, 1.0)
