"""Gradient supermask search (SPEC 4): an illustration, checked for what it does claim."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from prune_jax.slth.networks import Pool, weight_net
from prune_jax.slth.neuron_lp import neuron_lp_bound
from prune_jax.slth.supermask import SupermaskSearch, train_supermask
from prune_jax.slth.supnorm import sup_error


def _problem(n: int) -> tuple[np.ndarray, Pool]:
    rng = np.random.default_rng(0)
    w_star = rng.normal(size=2)
    return w_star / np.linalg.norm(w_star), Pool(rng.normal(size=(n, 2)), rng.normal(size=n))


def test_neuron_supermask_is_a_subset_and_respects_the_lp_bound() -> None:
    w_star, pool = _problem(8)
    search = SupermaskSearch(per_weight=False, output_relu=False, steps=50)  # as in --smoke
    with jax.enable_x64(True):
        res = train_supermask(jax.random.key(0), w_star, pool, search)
        mask = np.asarray(res.mask.hidden)
        # neuron masks keep or drop whole rows
        assert np.all(mask == mask[:, :1])
        np.testing.assert_array_equal(mask[:, 0], np.asarray(res.mask.output))
        err = sup_error(jax.random.key(1), w_star, weight_net(pool, res.mask))
    assert np.all(np.isfinite(np.asarray(res.losses))) and res.losses.shape == (50,)
    # no mask, trained or not, beats the certified lower bound
    assert err.exact
    assert err.value >= neuron_lp_bound(jax.random.key(2), w_star, pool).lower - 1e-12


def test_weight_supermask_learns_and_density_is_respected() -> None:
    w_star, pool = _problem(8)
    with jax.enable_x64(True):
        res = train_supermask(jax.random.key(0), w_star, pool, SupermaskSearch(steps=50))
        dense = train_supermask(jax.random.key(0), w_star, pool,
                                SupermaskSearch(steps=50, density=0.25))
    losses = np.asarray(res.losses)
    assert losses[-10:].mean() < losses[:5].mean()  # the scores do learn something
    kept = np.asarray(dense.mask.hidden).sum()
    assert kept == pytest.approx(0.25 * pool.w.size, abs=1)


def test_bad_options_name_the_argument() -> None:
    with pytest.raises(ValueError, match="density"):
        SupermaskSearch(density=1.5)
    with pytest.raises(ValueError, match="steps"):
        SupermaskSearch(steps=0)
    with pytest.raises(ValueError, match="learning_rate"):
        SupermaskSearch(learning_rate=-1.0)
