"""PQ Index, Gini index and the PQI bound (SPEC 3.1-3.2): oracles and properties."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from sp_oracles import bound_np, gini_np, pqi_np

from prune_jax.sparsity import gini_index, pq_index, pqi_retained_bound

PQS = [(0.5, 1.0), (1.0, 2.0), (0.5, 2.0)]
PROPERTY = settings(max_examples=20, deadline=None)

vectors = st.sampled_from([2, 3, 5, 8]).flatmap(
    lambda n: st.lists(st.floats(0.1, 10.0), min_size=n, max_size=n)).map(np.array)
pqs = st.sampled_from(PQS)


def pqi64(w: np.ndarray, p: float, q: float) -> float:
    with jax.enable_x64(True):
        return float(pq_index(jnp.asarray(w, jnp.float64), p, q))


# --------------------------------------------------------------------------- oracles

@pytest.mark.parametrize(("p", "q"), PQS)
def test_constant_vector_is_zero(p: float, q: float) -> None:
    for d in (1, 1000):
        for c in (-3.5, 0.1, 1e20):
            assert 0.0 <= float(pq_index(jnp.full((d,), c), p, q)) < 1e-5   # float32 sums


@pytest.mark.parametrize(("p", "q"), PQS)
def test_one_hot_is_the_maximum(p: float, q: float) -> None:
    for d in (2, 1000):
        x = jnp.zeros(d).at[d // 3].set(-2.0)
        np.testing.assert_allclose(float(pq_index(x, p, q)), 1 - d ** (1 / q - 1 / p), rtol=1e-6)


def test_large_gaussian_l1_l2() -> None:
    g = jax.random.normal(jax.random.key(0), (1_000_000,))
    assert abs(float(pq_index(g, 1.0, 2.0)) - (1 - np.sqrt(2 / np.pi))) < 3e-3


@pytest.mark.parametrize(("p", "q"), [*PQS, (0.3, 1.0), (1.0, 3.0), (0.7, 1.5)])
def test_matches_direct_float64_formula(p: float, q: float) -> None:
    w = np.random.default_rng(1).standard_t(3, size=500)
    np.testing.assert_allclose(pqi64(w, p, q), pqi_np(w, p, q), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(float(pq_index(w.astype(np.float32), p, q)), pqi_np(w, p, q),
                               rtol=1e-5, atol=1e-6)


def test_pytree_is_flattened_globally() -> None:
    w = np.random.default_rng(2).standard_normal(60).astype(np.float32)
    tree = {"a": w[:10].reshape(2, 5), "b": [w[10:30], w[30:].reshape(3, 10)]}
    np.testing.assert_allclose(float(pq_index(tree)), float(pq_index(w)), atol=1e-6)
    np.testing.assert_allclose(float(pq_index(tree)), pqi_np(w, 0.5, 1.0), rtol=1e-5)


def test_stable_for_huge_and_tiny_magnitudes() -> None:
    w = np.random.default_rng(3).standard_normal(1000).astype(np.float32)
    ref = float(pq_index(w))
    # (Down to 2^-100: below ~1.2e-38 float32 inputs are subnormal, and XLA:CPU flushes
    # subnormals to zero, so the vector itself changes.) Eagerly numpy, under jit XLA.
    jitted = jax.jit(pq_index, static_argnums=(1, 2))
    for scale in (2.0**100, 1e30, 1e-30, 2.0**-100):
        np.testing.assert_allclose(float(pq_index(w * np.float32(scale))), ref, rtol=1e-5)
        np.testing.assert_allclose(float(jitted(w * np.float32(scale), 0.5, 1.0)), ref,
                                   rtol=1e-5)
    mixed = np.array([3e38, 1e-38, 1.0, 2e-45, 1e20], np.float32)
    for p, q in PQS:
        for fn in (pq_index, jitted):
            got = float(fn(mixed, p, q))
            assert np.isfinite(got)
            np.testing.assert_allclose(got, pqi_np(mixed, p, q), rtol=1e-5)


def test_bfloat16_input_is_computed_in_float32() -> None:
    w = np.random.default_rng(4).standard_normal(256).astype(np.float32)
    wb = jnp.asarray(w, jnp.bfloat16)
    out = pq_index(wb)
    assert out.dtype == jnp.float32
    np.testing.assert_allclose(float(out), pqi_np(np.asarray(wb, np.float32), 0.5, 1.0),
                               rtol=1e-5)


def test_jit_of_measures_equals_eager_and_gives_nan_for_zero_vector() -> None:
    w = {"a": jnp.arange(1.0, 9.0), "b": -jnp.arange(3.0)}
    m = {"a": jnp.arange(8) % 3 > 0, "b": jnp.ones(3, bool)}
    for fn in (pq_index, gini_index):
        np.testing.assert_allclose(float(jax.jit(fn)(w)), float(fn(w)), rtol=1e-5)
        np.testing.assert_allclose(float(jax.jit(lambda x, y, f=fn: f(x, mask=y))(w, m)),
                                   float(fn(w, mask=m)), rtol=1e-5)
    assert np.isnan(float(jax.jit(pq_index)(jnp.zeros(4))))


def test_large_d_one_hot_and_constant() -> None:
    d = 2**22
    one_hot = jnp.zeros(d).at[5].set(1e-20)
    np.testing.assert_allclose(pqi_retained_bound(one_hot, 0.5, 1.0), 1.0, rtol=1e-6)
    np.testing.assert_allclose(float(pq_index(one_hot, 1.0, 2.0)), 1 - d**-0.5, rtol=1e-6)
    np.testing.assert_allclose(pqi_retained_bound(jnp.full((d,), 7.0)), d, rtol=1e-6)


@pytest.mark.slow
def test_d_1e8_does_not_overflow() -> None:
    d = 100_000_000
    one_hot = jnp.zeros(d, jnp.float32).at[d - 1].set(3.0)
    for p, q in PQS:
        np.testing.assert_allclose(pqi_retained_bound(one_hot, p, q), 1.0, rtol=1e-6)
        assert 0.999 < float(pq_index(one_hot, p, q)) <= 1.0
    np.testing.assert_allclose(pqi_retained_bound(jnp.ones(d, jnp.float32)), d, rtol=1e-6)


# --------------------------------------------------------------------------- properties

@PROPERTY
@given(w=vectors, pq=pqs)
def test_theorem1_range(w: np.ndarray, pq: tuple[float, float]) -> None:
    p, q = pq
    value = pqi64(w, p, q)
    assert -1e-15 <= value <= 1 - w.size ** (1 / q - 1 / p) + 1e-12


@PROPERTY
@given(w=vectors, pq=pqs, i=st.integers(0, 7), j=st.integers(0, 7),
       frac=st.floats(0.05, 0.95))
def test_d1_robin_hood(w: np.ndarray, pq: tuple[float, float], i: int, j: int,
                       frac: float) -> None:
    i, j = i % w.size, j % w.size
    assume(w[i] > w[j] + 0.05)
    alpha = frac * (w[i] - w[j]) / 2
    v = w.copy()
    v[i] -= alpha
    v[j] += alpha
    assert pqi64(v, *pq) < pqi64(w, *pq)


@PROPERTY
@given(w=vectors, pq=pqs, alpha=st.floats(1e-3, 1e3))
def test_d2_scaling(w: np.ndarray, pq: tuple[float, float], alpha: float) -> None:
    np.testing.assert_allclose(pqi64(alpha * w, *pq), pqi64(w, *pq), rtol=1e-12, atol=1e-14)


@PROPERTY
@given(w=vectors, pq=pqs, alpha=st.floats(1e-2, 1e2))
def test_d3_rising_tide(w: np.ndarray, pq: tuple[float, float], alpha: float) -> None:
    assume(np.ptp(w) > 0.05)
    assert pqi64(w + alpha, *pq) < pqi64(w, *pq)


@PROPERTY
@given(w=vectors, pq=pqs)
def test_d4_cloning(w: np.ndarray, pq: tuple[float, float]) -> None:
    np.testing.assert_allclose(pqi64(np.concatenate([w, w]), *pq), pqi64(w, *pq),
                               rtol=1e-12, atol=1e-14)


@PROPERTY
@given(w=vectors, pq=pqs, i=st.integers(0, 7), alpha=st.floats(1e-2, 1e3))
def test_p1_bill_gates(w: np.ndarray, pq: tuple[float, float], i: int, alpha: float) -> None:
    # Past beta_i = 1e3 d^2 max(w) (enough for these (p, q); see the seed's P1), growing the
    # largest fortune further always makes the vector sparser.
    i = i % w.size
    beta = 1e3 * w.size**2 * w.max()
    rich, richer = w.copy(), w.copy()
    rich[i] += beta
    richer[i] += beta * (1 + alpha)
    assert pqi64(richer, *pq) > pqi64(rich, *pq)


@PROPERTY
@given(w=vectors, pq=pqs)
def test_p2_babies(w: np.ndarray, pq: tuple[float, float]) -> None:
    assert pqi64(np.concatenate([w, [0.0]]), *pq) > pqi64(w, *pq)


@PROPERTY
@given(w=vectors, pq=pqs, seed=st.integers(0, 2**16))
def test_invariant_to_signs_and_order(w: np.ndarray, pq: tuple[float, float],
                                      seed: int) -> None:
    rng = np.random.default_rng(seed)
    v = rng.permutation(w) * rng.choice([-1.0, 1.0], size=w.size)
    np.testing.assert_allclose(pqi64(v, *pq), pqi64(w, *pq), rtol=1e-12, atol=1e-14)


# --------------------------------------------------------------------------- Gini

def test_gini_oracles_and_formula() -> None:
    assert abs(float(gini_index(jnp.full((9,), 2.0)))) < 1e-6
    np.testing.assert_allclose(float(gini_index(jnp.zeros(10).at[2].set(1.0))), 0.9, rtol=1e-6)
    w = np.random.default_rng(5).standard_normal(300)
    np.testing.assert_allclose(float(gini_index(w.astype(np.float32))), gini_np(w), rtol=1e-5)
    tree = {"a": w[:100].astype(np.float32), "b": w[100:].astype(np.float32)}
    np.testing.assert_allclose(float(gini_index(tree)), gini_np(w), rtol=1e-5)


@PROPERTY
@given(w=vectors, i=st.integers(0, 7), j=st.integers(0, 7), frac=st.floats(0.05, 0.95))
def test_gini_robin_hood(w: np.ndarray, i: int, j: int, frac: float) -> None:
    i, j = i % w.size, j % w.size
    assume(w[i] > w[j] + 0.05)
    v = w.copy()
    v[i] -= frac * (w[i] - w[j]) / 2
    v[j] += frac * (w[i] - w[j]) / 2
    with jax.enable_x64(True):
        assert float(gini_index(jnp.asarray(v))) < float(gini_index(jnp.asarray(w)))


# --------------------------------------------------------------------------- Theorem 2

@pytest.mark.parametrize(("p", "q"), PQS)
@pytest.mark.parametrize("kind", ["gaussian", "sparse", "heavy", "uniform"])
def test_theorem2_bound_holds_for_every_r(p: float, q: float, kind: str) -> None:
    """Brute force of Theorem 2's claim: for EVERY r, with eta_r the smallest eta such that
    the mass of the d - r smallest (in l_p^p) is <= eta times that of the r largest, the r
    largest indices number at least the bound: r >= bound(eta_r)."""
    rng = np.random.default_rng(hash(kind) % 2**32)
    d = 40
    w = {"gaussian": rng.standard_normal(d), "uniform": rng.uniform(-1, 1, d),
         "heavy": rng.standard_cauchy(d),
         "sparse": rng.standard_normal(d) * (rng.uniform(size=d) < 0.3)}[kind]
    w[0] = 1.5  # never the zero vector
    mags = np.sort(np.abs(w))[::-1] ** p
    with jax.enable_x64(True):
        x = jnp.asarray(w, jnp.float64)
        for r in range(1, d + 1):
            eta_r = mags[r:].sum() / mags[:r].sum()
            bound = pqi_retained_bound(x, p, q, eta=eta_r)
            np.testing.assert_allclose(bound, bound_np(w, p, q, eta_r), rtol=1e-10)
            assert r >= bound * (1 - 1e-12), (r, bound)


@pytest.mark.parametrize(("p", "q"), PQS)
def test_bound_with_eta_zero_counts_nonzeros(p: float, q: float) -> None:
    rng = np.random.default_rng(6)
    for k in (1, 3, 17, 50):
        w = np.zeros(64, np.float32)
        support = rng.choice(64, size=k, replace=False)
        w[support] = rng.standard_normal(k)
        assert pqi_retained_bound(w, p, q) <= k * (1 + 1e-5)
        w[support] = 2.5  # k equal non-zeros: the bound is tight
        np.testing.assert_allclose(pqi_retained_bound(w, p, q), k, rtol=1e-12)


def test_bound_of_float32_input_is_float64_accurate() -> None:
    w = np.random.default_rng(7).standard_normal(1000).astype(np.float32)
    for p, q in PQS:
        np.testing.assert_allclose(pqi_retained_bound(w, p, q, eta=0.1),
                                   bound_np(w, p, q, 0.1), rtol=1e-10)


@pytest.mark.parametrize("pq", [(0.5, 1.0), (1.0, 2.0)])
def test_masked_measures_equal_measures_of_the_live_entries(pq):
    rng = np.random.default_rng(7)
    x = {"a": jnp.asarray(rng.normal(size=(30, 4)), jnp.float32),
         "b": jnp.asarray(rng.laplace(size=17), jnp.float32)}
    m = {"a": jnp.asarray(rng.random((30, 4)) < 0.6), "b": jnp.asarray(rng.random(17) < 0.3)}
    live = jnp.concatenate([x["a"][m["a"]], x["b"][m["b"]]])
    np.testing.assert_allclose(pq_index(x, *pq, mask=m), pq_index(live, *pq), rtol=1e-5)
    np.testing.assert_allclose(gini_index(x, mask=m), gini_index(live), rtol=1e-5)
