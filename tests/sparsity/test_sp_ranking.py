"""prune_jax.ranking against brute-force numpy oracles (lexsort), host and jit paths."""

from __future__ import annotations

import doctest

import jax
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sp_oracles import gather, remove_smallest_np, scatter, units_np

from prune_jax import ranking

SCOPES = ["global", "layer", "neuron"]
SHAPES = [(3, 3, 2, 4), (36, 5), (7,)]


def draw(seed: int, kind: str, shapes=SHAPES) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    out = []
    for shape in shapes:
        if kind == "ties":   # few magnitudes of both signs, zeros and -0.0 included
            w = rng.choice([0.0, -0.0, 0.5, -0.5, 1.0, -1.5], shape)
        elif kind == "subnormal":   # ordered by bit pattern, never flushed
            w = rng.choice([1e-45, -3e-45, 1e-40, 1.0, -2.0], shape)
        else:
            w = rng.standard_normal(shape)
        out.append(w.astype(np.float32))
    return out


def oracle(leaves, k, scope, live=None) -> list[np.ndarray]:
    live = [np.ones(x.shape, bool) for x in leaves] if live is None else live
    out = [np.zeros(x.shape, bool) for x in leaves]
    for kk, unit in zip(k, units_np(leaves, scope), strict=True):
        alive = gather(live, unit)
        scatter(out, unit, remove_smallest_np(gather(leaves, unit), alive,
                                              max(int(kk), int((~alive).sum()))))
    return out


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**16), kind=st.sampled_from(["normal", "ties", "subnormal"]),
       scope=st.sampled_from(SCOPES), frac=st.floats(0.0, 1.0), masked=st.booleans())
def test_remove_smallest_matches_lexsort(seed, kind, scope, frac, masked):
    leaves = draw(seed, kind)
    rng = np.random.default_rng(seed + 1)
    live = [rng.uniform(size=x.shape) < 0.7 for x in leaves] if masked else None
    sizes = ranking.unit_sizes([x.shape for x in leaves], scope)
    k = rng.binomial(sizes, frac)   # a different count per unit
    got = ranking.remove_smallest(leaves, k, scope=scope, live=live)
    for g, w in zip(got, oracle(leaves, k, scope, live), strict=True):
        np.testing.assert_array_equal(g, w)


@pytest.mark.parametrize("scope", SCOPES)
def test_jit_path_equals_host_path(scope):
    leaves = draw(3, "ties")
    live = [np.random.default_rng(4).uniform(size=x.shape) < 0.6 for x in leaves]
    k = np.floor(0.55 * ranking.unit_sizes([x.shape for x in leaves], scope)).astype(int)
    host = ranking.remove_smallest(leaves, k, scope=scope, live=live)
    traced = jax.jit(lambda w, m: ranking.remove_smallest(w, k, scope=scope, live=m))(
        leaves, live)
    for h, t, w in zip(host, traced, oracle(leaves, k, scope, live), strict=True):
        np.testing.assert_array_equal(h, w)
        np.testing.assert_array_equal(np.asarray(t), w)


def test_ranks_sort_and_prefix_norms():
    leaves = draw(5, "ties", [(70, 50), (1000,), (3, 3, 40)])   # 4860 weights: 3 blocks
    flat = np.abs(np.concatenate([x.ravel() for x in leaves]).astype(np.float64))
    order = np.lexsort((np.arange(flat.size), flat))
    r = ranking.rank_magnitudes(leaves)
    np.testing.assert_array_equal(r.order, order)
    np.testing.assert_array_equal(r.magnitudes, flat[order])
    ranks = ranking.ranks(r)
    np.testing.assert_array_equal(ranks[order], np.arange(flat.size))
    k = np.array([0, 1, 2047, 2048, 2049, 4095, 4096, 4859, 4860])
    for kk in k:   # "remove the k smallest" is ranks < k, exactly as remove_smallest does
        removed = np.concatenate([x.ravel() for x in ranking.remove_smallest(leaves, kk)])
        np.testing.assert_array_equal(removed, ranks < kk)
    want = np.sqrt(np.concatenate([[0.0], np.cumsum(flat[order] ** 2)]))[k]
    np.testing.assert_allclose(ranking.prefix_norms(r, k), want, rtol=1e-14)
    sorted_only = ranking.rank_magnitudes(leaves, with_order=False)
    assert sorted_only.order is None
    np.testing.assert_array_equal(sorted_only.magnitudes, r.magnitudes)
    np.testing.assert_allclose(ranking.prefix_norms(sorted_only, k.reshape(3, 3)),
                               want.reshape(3, 3), rtol=1e-14)
    with pytest.raises(ValueError, match="k must be in"):
        ranking.prefix_norms(r, 4861)


def test_float64_leaves_rank_in_float64():
    with jax.enable_x64(True):
        w = np.array([1.0 + 3e-12, 1.0, 1.0 + 1e-12, 1.0 + 2e-12])
        assert ranking.rank_magnitudes([w]).order.tolist() == [1, 2, 3, 0]
        assert ranking.remove_smallest([w], 2)[0].tolist() == [False, True, True, False]
        traced = jax.jit(lambda x: ranking.remove_smallest([x], 2)[0])(w)
        assert np.asarray(traced).tolist() == [False, True, True, False]


def test_docstring_examples():
    finder, runner = doctest.DocTestFinder(), doctest.DocTestRunner()
    for test in finder.find(ranking):
        assert not runner.run(test).failed, test.name
