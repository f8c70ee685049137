"""SAP / One Shot / Lottery Ticket pruning steps (SPEC 3.2) against a numpy hand computation."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sp_oracles import gather, pqi_np, remove_smallest_np, scatter, units_np

from prune_jax.sparsity import (
    SAP,
    LotteryTicket,
    OneShot,
    fraction_step,
    prune_step,
    sap_step,
)

SCOPES = ["global", "layer", "neuron"]


def make(seed: int, density: float = 0.8) -> tuple[dict, dict]:
    rng = np.random.default_rng(seed)
    params = {"Conv_0": {"kernel": rng.standard_normal((3, 3, 2, 4)).astype(np.float32),
                         "bias": rng.standard_normal(4).astype(np.float32)},
              "Dense_0": {"kernel": (rng.standard_t(2, (24, 6))).astype(np.float32)}}
    mask = jax.tree.map(lambda x: np.ones(x.shape, bool), params)
    for layer in ("Conv_0", "Dense_0"):
        mask[layer]["kernel"] = rng.uniform(size=params[layer]["kernel"].shape) < density
    return params, mask


def kernels(tree: dict) -> list[np.ndarray]:
    return [np.asarray(tree["Conv_0"]["kernel"]), np.asarray(tree["Dense_0"]["kernel"])]


def hand_sap(params: dict, mask: dict, scope: str, p: float, q: float, eta: float,
             gamma: float, beta: float) -> tuple[list[np.ndarray], list[tuple]]:
    """Algorithm 1 for one step, written out in numpy float64 per unit."""
    leaves, live = kernels(params), kernels(mask)
    out = [m.copy() for m in live]
    stats = []
    for unit in units_np(leaves, scope):
        values, alive = gather(leaves, unit).astype(np.float64), gather(live, unit)
        d = int(alive.sum())
        pqi = pqi_np(values[alive], p, q)
        r = d * (1 + eta) ** (-q / (q - p)) * (1 - pqi) ** (q * p / (q - p))
        c = int(np.floor(d * min(gamma * (1 - r / d), beta)))
        scatter(out, unit, ~remove_smallest_np(values, alive, (alive.size - d) + c))
        stats.append((d, pqi, r, c))
    return out, stats


def flat_stats(result) -> list[tuple]:
    rows = []
    for s in result.units.values():
        rows.extend(zip(s.d.tolist(), s.pqi.tolist(), s.r.tolist(), s.c.tolist(), strict=True))
    return rows


@pytest.mark.parametrize("scope", SCOPES)
@pytest.mark.parametrize(("p", "q", "eta", "gamma", "beta"), [
    (0.5, 1.0, 0.0, 1.0, 0.9), (1.0, 2.0, 0.0, 1.0, 0.9), (0.5, 2.0, 0.2, 1.5, 0.5),
])
def test_sap_step_matches_hand_computation(scope: str, p: float, q: float, eta: float,
                                           gamma: float, beta: float) -> None:
    params, mask = make(0)
    res = sap_step(params, mask, p=p, q=q, eta=eta, gamma=gamma, beta=beta, scope=scope)
    want_mask, want = hand_sap(params, mask, scope, p, q, eta, gamma, beta)
    for g, w in zip(kernels(res.mask), want_mask, strict=True):
        np.testing.assert_array_equal(g, w)
    got = flat_stats(res)
    assert [g[0] for g in got] == [w[0] for w in want]
    assert [g[3] for g in got] == [w[3] for w in want]
    # power sums are reduced in float64, so the float32 weights give float64-accurate stats
    np.testing.assert_allclose([g[1] for g in got], [w[1] for w in want], rtol=1e-10)
    np.testing.assert_allclose([g[2] for g in got], [w[2] for w in want], rtol=1e-10)
    assert np.all(res.mask["Conv_0"]["bias"])
    expected_keys = ["global"] if scope == "global" else ["Conv_0/kernel", "Dense_0/kernel"]
    assert list(res.units) == expected_keys


def test_sap_step_float64_is_tight() -> None:
    params, mask = make(1)
    with jax.enable_x64(True):
        p64 = jax.tree.map(lambda x: jnp.asarray(x, jnp.float64), params)
        res = sap_step(p64, mask, scope="neuron")
    _, want = hand_sap(params, mask, "neuron", 0.5, 1.0, 0.0, 1.0, 0.9)
    got = flat_stats(res)
    np.testing.assert_allclose([g[2] for g in got], [w[2] for w in want], rtol=1e-12)
    assert [g[3] for g in got] == [w[3] for w in want]


def test_sap_oracle_units() -> None:
    """Constant unit: r = d, nothing pruned. One-hot unit: r = 1, c = min(d - 1, floor(0.9 d)).
    All-zero live unit: PQI undefined, nothing pruned."""
    kernel = np.zeros((10, 3), np.float32)
    kernel[:, 0] = 2.0
    kernel[4, 1] = -5.0
    params = {"Dense_0": {"kernel": kernel}}
    res = sap_step(params, None, scope="neuron")
    s = res.units["Dense_0/kernel"]
    np.testing.assert_array_equal(s.d, [10, 10, 10])
    np.testing.assert_allclose(s.r[:2], [10.0, 1.0], rtol=1e-12)
    np.testing.assert_array_equal(s.c, [0, 9, 0])
    assert np.isnan(s.pqi[2]) and np.isnan(s.r[2])
    np.testing.assert_array_equal(res.mask["Dense_0"]["kernel"][:, 1], np.arange(10) == 4)
    res = sap_step(params, None, scope="neuron", beta=0.5)
    np.testing.assert_array_equal(res.units["Dense_0/kernel"].c, [0, 5, 0])


def test_masks_only_shrink_and_counts_add_up() -> None:
    params, mask = make(2, density=1.0)
    rng = np.random.default_rng(3)
    for policy in (SAP(), SAP(p=1.0, q=2.0), LotteryTicket(), OneShot()):
        m = mask
        for _ in range(5):
            res = prune_step(policy, params, m, scope="neuron")
            for new, old in zip(jax.tree.leaves(res.mask), jax.tree.leaves(m), strict=True):
                assert not np.any(np.asarray(new) & ~np.asarray(old))
            removed = sum(int((np.asarray(o) & ~np.asarray(n)).sum()) for n, o in
                          zip(jax.tree.leaves(res.mask), jax.tree.leaves(m), strict=True))
            assert removed == sum(int(s.c.sum()) for s in res.units.values())
            m = res.mask
            params = jax.tree.map(lambda w: w + 0.1 * rng.standard_normal(w.shape)
                                  .astype(np.float32), params)


@pytest.mark.parametrize("scope", SCOPES)
def test_fraction_step_prunes_a_fraction_of_the_remaining(scope: str) -> None:
    params, mask = make(4, density=0.9)
    res = fraction_step(params, mask, fraction=0.2, scope=scope)
    leaves, live, new = kernels(params), kernels(mask), kernels(res.mask)
    for unit in units_np(leaves, scope):
        alive = gather(live, unit)
        d = int(alive.sum())
        want = ~remove_smallest_np(gather(leaves, unit), alive, (alive.size - d) + int(0.2 * d))
        np.testing.assert_array_equal(gather(new, unit), want)
    got = flat_stats(res)
    assert [g[3] for g in got] == [int(np.floor(0.2 * g[0] + 1e-9)) for g in got]


def test_fraction_step_global_recursion() -> None:
    params, _ = make(5)
    m, live = None, 72 + 144
    for _ in range(4):
        res = fraction_step(params, m, fraction=0.2)
        assert res.units["global"].d[0] == live
        live -= int(np.floor(0.2 * live + 1e-9))
        m = res.mask
    assert sum(int(np.asarray(x).sum()) for x in kernels(m)) == live


def test_policies_are_data() -> None:
    assert (SAP().ranks, SAP().retrain, SAP().rewind) == ("current", True, "init")
    assert (LotteryTicket().ranks, LotteryTicket().retrain) == ("current", True)
    assert (OneShot().ranks, OneShot().retrain, OneShot().rewind) == ("dense", False, None)
    assert OneShot().fraction == LotteryTicket().fraction == 0.2
    assert (SAP().p, SAP().q, SAP().eta, SAP().gamma, SAP().beta) == (0.5, 1.0, 0.0, 1.0, 0.9)
    with pytest.raises(dataclasses.FrozenInstanceError):
        SAP().p = 1.0
    with pytest.raises(TypeError):
        OneShot(rewind="init")
    params, mask = make(6)
    a = prune_step(SAP(p=1.0, q=2.0, gamma=1.2), params, mask, scope="layer")
    b = sap_step(params, mask, p=1.0, q=2.0, gamma=1.2, scope="layer")
    jax.tree.map(np.testing.assert_array_equal, a.mask, b.mask)
    a = prune_step(OneShot(fraction=0.3), params, mask)
    b = fraction_step(params, mask, fraction=0.3)
    jax.tree.map(np.testing.assert_array_equal, a.mask, b.mask)
