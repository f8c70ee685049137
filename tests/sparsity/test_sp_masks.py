"""Magnitude masks, apply_mask and sparsity reports (SPEC 2.3, 3.2) against a sorting oracle."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from sp_oracles import gather, remove_smallest_np, scatter, units_np

from prune_jax.sparsity import (
    apply_mask,
    keep_pruned,
    l1,
    magnitude_mask,
    pq_index,
    sap_step,
    sparsity_report,
)
from prune_jax.tree import prunable_tree

SCOPES = ["global", "layer", "neuron"]


def make_params(seed: int, ties: bool = False) -> dict:
    """A small Flax-like tree: two kernels (one conv), biases, a norm scale."""
    rng = np.random.default_rng(seed)

    def draw(shape: tuple[int, ...]) -> np.ndarray:
        if ties:  # few distinct magnitudes, both signs, and exact zeros
            return (rng.integers(-3, 4, shape) * 0.5).astype(np.float32)
        return rng.standard_normal(shape).astype(np.float32)

    return {
        "Conv_0": {"kernel": draw((3, 3, 2, 4)), "bias": draw((4,))},
        "BatchNorm_0": {"scale": draw((4,))},
        "Dense_0": {"kernel": draw((36, 5)), "bias": draw((5,))},
    }


def kernels(tree: dict) -> list[np.ndarray]:
    """The prunable leaves in jax.tree.leaves order (Conv_0 before Dense_0)."""
    return [np.asarray(tree["Conv_0"]["kernel"]), np.asarray(tree["Dense_0"]["kernel"])]


def oracle_mask(leaves: list[np.ndarray], sparsity: float, scope: str,
                live: list[np.ndarray] | None = None) -> list[np.ndarray]:
    live = [np.ones(x.shape, bool) for x in leaves] if live is None else live
    out = [np.ones(x.shape, bool) for x in leaves]
    for unit in units_np(leaves, scope):
        values, alive = gather(leaves, unit), gather(live, unit)
        k = max(int(np.floor(sparsity * values.size + 1e-9)), int((~alive).sum()))
        scatter(out, unit, ~remove_smallest_np(values, alive, k))
    return out


def random_mask(params: dict, seed: int, density: float = 0.7) -> dict:
    rng = np.random.default_rng(seed)
    mask = jax.tree.map(lambda x: np.ones(np.shape(x), bool), params)
    for layer in ("Conv_0", "Dense_0"):
        mask[layer]["kernel"] = rng.uniform(size=params[layer]["kernel"].shape) < density
    return mask


@pytest.mark.parametrize("scope", SCOPES)
@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("with_mask", [False, True])
def test_matches_sorting_oracle(scope: str, ties: bool, with_mask: bool) -> None:
    params = make_params(0, ties)
    mask = random_mask(params, 1) if with_mask else None
    live = None if mask is None else kernels(mask)
    for sparsity in (0.0, 0.1, 0.29, 0.37, 0.5, 0.9, 0.999):
        got = magnitude_mask(params, sparsity, scope=scope, mask=mask)
        for g, want in zip(kernels(got), oracle_mask(kernels(params), sparsity, scope, live),
                           strict=True):
            np.testing.assert_array_equal(g, want)
        for leaf in (got["Conv_0"]["bias"], got["Dense_0"]["bias"], got["BatchNorm_0"]["scale"]):
            assert isinstance(leaf, jax.Array) and np.all(leaf)


def test_ties_in_flat_order_across_leaves_and_neurons() -> None:
    params = {"a": {"kernel": np.ones((2, 3), np.float32)},
              "b": {"kernel": np.ones((3, 2), np.float32)}}
    got = magnitude_mask(params, 0.5, scope="global")
    np.testing.assert_array_equal(got["a"]["kernel"], np.zeros((2, 3), bool))
    np.testing.assert_array_equal(got["b"]["kernel"], np.ones((3, 2), bool))
    assert np.all(magnitude_mask(params, 0.34, scope="neuron")["a"]["kernel"])  # floor(0.68)
    got = magnitude_mask(params, 0.5, scope="neuron")   # neuron j of "b": rows 0..2, drop row 0
    np.testing.assert_array_equal(got["b"]["kernel"], [[False, False], [True, True],
                                                         [True, True]])


def test_zero_negative_zero_and_subnormals_rank_by_magnitude() -> None:
    w = np.array([[0.5, -0.0], [0.0, -1e-30], [2.0, 1e-37], [3e-45, -1e-45]], np.float32)
    got = magnitude_mask({"k": {"kernel": w}}, 0.5)["k"]["kernel"]
    np.testing.assert_array_equal(got, [[True, False], [False, True], [True, True],
                                        [False, False]])


def test_existing_mask_stays_pruned_even_when_sparsity_is_lower() -> None:
    params = make_params(3)
    mask = random_mask(params, 4, density=0.3)
    got = magnitude_mask(params, 0.2, scope="layer", mask=mask)
    for g, m in zip(kernels(got), kernels(mask), strict=True):
        np.testing.assert_array_equal(g, m)  # more than 20% already pruned: nothing else goes
    got = magnitude_mask(params, 0.9, scope="layer", mask=mask)
    for g, m in zip(kernels(got), kernels(mask), strict=True):
        assert not np.any(g & ~m)


def test_custom_prunable() -> None:
    params = make_params(5)
    got = magnitude_mask(params, 0.5, prunable=lambda name, leaf: name == "Dense_0/kernel")
    assert np.all(got["Conv_0"]["kernel"]) and (~got["Dense_0"]["kernel"]).sum() == 90
    flags = jax.tree.map(lambda _: False, params)
    flags["Conv_0"]["bias"] = True
    got = magnitude_mask(params, 0.5, prunable=flags)
    assert (~got["Conv_0"]["bias"]).sum() == 2 and np.all(got["Dense_0"]["kernel"])


def test_under_jit_with_traced_params_and_mask() -> None:
    # every scope's jit path is checked against the oracle in test_sp_ranking.py
    scope = "neuron"
    params, mask = make_params(6, ties=True), random_mask(make_params(6), 7)
    eager = magnitude_mask(params, 0.6, scope=scope, mask=mask)
    jitted = jax.jit(lambda p, m: magnitude_mask(p, 0.6, scope=scope, mask=m))(params, mask)
    jax.tree.map(np.testing.assert_array_equal, eager, jitted)


def test_bfloat16_and_float64_params() -> None:
    bf = jax.tree.map(lambda x: jnp.asarray(x, jnp.bfloat16), make_params(6))
    want = oracle_mask([np.asarray(x, np.float32) for x in kernels(bf)], 0.6, "layer")
    for g, w in zip(kernels(magnitude_mask(bf, 0.6, scope="layer")), want, strict=True):
        np.testing.assert_array_equal(g, w)
    with jax.enable_x64(True):   # differences below float32 resolution still rank
        w = np.array([[1.0 + 1e-12, 1.0], [1.0 + 3e-12, 1.0 + 2e-12]])
        got = magnitude_mask({"d": {"kernel": jnp.asarray(w)}}, 0.5)["d"]["kernel"]
    np.testing.assert_array_equal(got, [[False, False], [True, True]])


@pytest.mark.parametrize("scope", ["global", "layer"])
def test_large_units_with_ties_and_a_mask(scope: str) -> None:
    rng = np.random.default_rng(11)
    w0 = (rng.integers(-40, 41, (320, 512)) / 8).astype(np.float32)   # 163840 weights, ties
    w1 = rng.laplace(0.0, 0.1, (3, 3, 64, 16)).astype(np.float32)
    params = {"Conv_0": {"kernel": w1}, "Dense_0": {"kernel": w0, "bias": np.zeros(512)}}
    mask = jax.tree.map(lambda x: np.ones(np.shape(x), bool), params)
    mask["Dense_0"]["kernel"] = rng.uniform(size=w0.shape) < 0.7
    for sparsity, m in ((0.37, None), (0.8, mask)):
        got = magnitude_mask(params, sparsity, scope=scope, mask=m)
        live = None if m is None else [m["Conv_0"]["kernel"], m["Dense_0"]["kernel"]]
        want = oracle_mask([w1, w0], sparsity, scope, live)
        np.testing.assert_array_equal(got["Conv_0"]["kernel"], want[0])
        np.testing.assert_array_equal(got["Dense_0"]["kernel"], want[1])


def test_apply_mask_and_report() -> None:
    params = make_params(8)
    params["Dense_0"]["kernel"][0, :] = 0.0  # zeros in params must not count as pruned
    mask = magnitude_mask(params, 0.25, scope="layer")
    masked = apply_mask(params, mask)
    for w, m in zip(jax.tree.leaves(masked), jax.tree.leaves(mask), strict=True):
        assert w.dtype == jnp.float32 and np.all(np.asarray(w)[~np.asarray(m)] == 0.0)
    np.testing.assert_array_equal(masked["Conv_0"]["kernel"][mask["Conv_0"]["kernel"]],
                                  params["Conv_0"]["kernel"][mask["Conv_0"]["kernel"]])
    report = sparsity_report(mask)
    assert report.leaves["Conv_0/kernel"] == (72, 54, 0.25, 0.75)
    assert report.leaves["Dense_0/kernel"] == (180, 135, 0.25, 0.75)
    assert report.leaves["Dense_0/bias"].sparsity == 0.0
    assert report.prunable.total == 252 and report.prunable.kept == 189
    assert report.overall.total == 252 + 13 and report.overall.kept == 189 + 13
    jax.tree.map(np.testing.assert_array_equal, masked, jax.jit(apply_mask)(params, mask))


# --------------------------------------------------------------------------- Flax NNX

class MLP(nnx.Module):
    def __init__(self, rngs: nnx.Rngs) -> None:
        self.l1 = nnx.Linear(6, 16, rngs=rngs)
        self.l2 = nnx.Linear(16, 3, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.l2(jnp.tanh(self.l1(x)))


@pytest.fixture(scope="module")
def mlp() -> MLP:
    return MLP(nnx.Rngs(0))   # eager initialisation is slow: built once


def test_nnx_state_masks_equal_linen_masks(mlp: MLP) -> None:
    state = nnx.state(mlp, nnx.Param)
    linen = {layer: {leaf: np.asarray(state[layer][leaf][...]) for leaf in ("bias", "kernel")}
             for layer in ("l1", "l2")}
    for scope in SCOPES:
        got, want = magnitude_mask(state, 0.6, scope=scope), magnitude_mask(linen, 0.6,
                                                                            scope=scope)
        assert jax.tree.structure(got) == jax.tree.structure(state)
        for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
            np.testing.assert_array_equal(g, w)
        assert np.all(got["l1"]["bias"][...])
    mask = magnitude_mask(state, 0.5)
    assert sparsity_report(mask).prunable == (16 * 6 + 3 * 16, 72, 0.5, 0.5)
    np.testing.assert_allclose(pq_index(state, mask=mask), pq_index(linen, mask=magnitude_mask(
        linen, 0.5)), rtol=1e-6)
    assert list(sap_step(state, mask, scope="layer").units) == ["l1/kernel", "l2/kernel"]


@pytest.mark.parametrize("driver", ["nnx.Optimizer", "optax"])
def test_nnx_training_keeps_pruned_weights_at_zero(mlp: MLP, driver: str) -> None:
    model = nnx.clone(mlp)
    mask = magnitude_mask(nnx.state(model, nnx.Param), 0.5)
    nnx.update(model, apply_mask(nnx.state(model, nnx.Param), mask))
    kernels = prunable_tree(nnx.state(model, nnx.Param))   # l1 on the kernels only
    tx = optax.chain(l1(1e-3, mask=kernels), optax.sgd(0.1, momentum=0.9), keep_pruned(mask))
    x, y = jnp.ones((8, 6)), jnp.zeros((8, 3))

    def loss(m: MLP) -> jax.Array:
        return jnp.mean((m(x) - y) ** 2)

    if driver == "nnx.Optimizer":
        opt = nnx.Optimizer(model, tx, wrt=nnx.Param)
        step = nnx.jit(lambda model, opt: opt.update(model, nnx.grad(loss)(model)))
        for _ in range(3):
            step(model, opt)
        state = nnx.state(model, nnx.Param)
    else:
        graph, state = nnx.split(model, nnx.Param)

        @jax.jit
        def step(state: nnx.State, opt_state: optax.OptState) -> tuple:
            grads = jax.grad(lambda s: loss(nnx.merge(graph, s)))(state)
            updates, opt_state = tx.update(grads, opt_state, state)
            return optax.apply_updates(state, updates), opt_state

        opt_state = tx.init(state)
        for _ in range(3):
            state, opt_state = step(state, opt_state)
    for w, m in zip(jax.tree.leaves(state), jax.tree.leaves(mask), strict=True):
        w, m = np.asarray(w), np.asarray(m)
        assert np.all(w[~m] == 0.0) and np.any(w[m] != 0.0)
