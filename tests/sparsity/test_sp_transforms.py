"""optax transforms: keep_pruned keeps pruned weights at exactly 0.0; l1 is the l1 gradient."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax import lax

from prune_jax.sparsity import apply_mask, keep_pruned, l1, l1_prox, magnitude_mask

STEPS = 60


def problem(seed: int) -> tuple[dict, tuple[jax.Array, jax.Array]]:
    """A two-layer regression: params (with biases) and one batch."""
    rng = np.random.default_rng(seed)

    def normal(*shape: int) -> jax.Array:
        return jnp.asarray(rng.standard_normal(shape), jnp.float32)

    params = {"Dense_0": {"kernel": normal(6, 8), "bias": jnp.zeros(8)},
              "Dense_1": {"kernel": normal(8, 3), "bias": jnp.zeros(3)}}
    return params, (normal(32, 6), normal(32, 3))


def loss(params: dict, batch: tuple[jax.Array, jax.Array]) -> jax.Array:
    x, y = batch
    h = jnp.tanh(x @ params["Dense_0"]["kernel"] + params["Dense_0"]["bias"])
    return jnp.mean((h @ params["Dense_1"]["kernel"] + params["Dense_1"]["bias"] - y) ** 2)


def train(make_tx, params: dict, mask: dict, batch: tuple) -> dict:
    """STEPS steps in one lax.scan; the mask is a traced jit argument."""
    opt_state = make_tx(mask).init(params)

    @jax.jit
    def run(params: dict, opt_state: optax.OptState, mask: dict, batch: tuple) -> dict:
        tx = make_tx(mask)

        def step(carry: tuple, _: None) -> tuple[tuple, None]:
            params, opt_state = carry
            grads = jax.grad(loss)(params, batch)
            updates, opt_state = tx.update(grads, opt_state, params)
            return (optax.apply_updates(params, updates), opt_state), None

        return lax.scan(step, (params, opt_state), None, length=STEPS)[0][0]

    return run(params, opt_state, mask, batch)


CHAINS = {
    "sgd_momentum_wd": lambda m: optax.chain(optax.add_decayed_weights(1e-2),
                                             optax.sgd(0.1, momentum=0.9), keep_pruned(m)),
    "adamw": lambda m: optax.chain(optax.adamw(1e-2, weight_decay=1e-2), keep_pruned(m)),
    "l1_nesterov": lambda m: optax.chain(l1(1e-3), optax.sgd(0.05, momentum=0.9,
                                                              nesterov=True), keep_pruned(m)),
}


@pytest.mark.parametrize("name", list(CHAINS))
def test_pruned_weights_stay_exactly_zero(name: str) -> None:
    params, batch = problem(0)
    mask = magnitude_mask(params, 0.5)
    start = apply_mask(params, mask)
    out = train(CHAINS[name], start, mask, batch)
    for w, w0, m in zip(jax.tree.leaves(out), jax.tree.leaves(start), jax.tree.leaves(mask),
                        strict=True):
        w, w0, m = np.asarray(w), np.asarray(w0), np.asarray(m)
        assert np.all(w[~m] == 0.0) and not np.any(np.signbit(w[~m]))
        assert np.any(w[m] != w0[m])  # the kept weights did train
    assert loss(out, batch) < loss(start, batch)


def test_without_keep_pruned_the_zeros_move() -> None:
    """The check above can fail: the same chain without keep_pruned revives pruned weights."""
    params, batch = problem(1)
    mask = magnitude_mask(params, 0.5)
    out = train(lambda m: optax.chain(optax.add_decayed_weights(1e-2),
                                      optax.sgd(0.1, momentum=0.9)),
                apply_mask(params, mask), mask, batch)
    kernel = np.asarray(out["Dense_0"]["kernel"])
    assert np.any(kernel[~np.asarray(mask["Dense_0"]["kernel"])] != 0.0)


def test_keep_pruned_callable_mask_and_mismatch() -> None:
    params, _ = problem(2)
    mask = magnitude_mask(params, 0.3)
    tx = keep_pruned(lambda p: mask)
    ones = jax.tree.map(jnp.ones_like, params)
    updates, _ = tx.update(ones, tx.init(params), params)
    for u, m in zip(jax.tree.leaves(updates), jax.tree.leaves(mask), strict=True):
        np.testing.assert_array_equal(np.asarray(u), np.asarray(m, np.float32))


def test_l1_chained_with_sgd_is_sgd_on_the_penalised_loss() -> None:
    params, batch = problem(3)
    # keep every weight away from 0 so that sign(w) is the gradient of |w| along the path
    params = jax.tree.map(lambda w: jnp.where(w >= 0, 1.0, -1.0) * (0.5 + jnp.abs(w)), params)
    lam, lr = 0.05, 0.005
    tx = optax.chain(l1(lam), optax.sgd(lr, momentum=0.9))
    ref_tx = optax.sgd(lr, momentum=0.9)

    def penalised(p: dict) -> jax.Array:
        return loss(p, batch) + lam * sum(jnp.sum(jnp.abs(w)) for w in jax.tree.leaves(p))

    @jax.jit
    def steps(a: dict, sa: optax.OptState, b: dict, sb: optax.OptState) -> tuple:
        ua, sa = tx.update(jax.grad(loss)(a, batch), sa, a)
        ub, sb = ref_tx.update(jax.grad(penalised)(b), sb, b)
        return optax.apply_updates(a, ua), sa, optax.apply_updates(b, ub), sb

    a, b = params, params
    sa, sb = tx.init(a), ref_tx.init(b)
    for _ in range(10):
        a, sa, b, sb = steps(a, sa, b, sb)
        jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-6, atol=1e-7), a, b)
    assert min(float(jnp.min(jnp.abs(w))) for w in jax.tree.leaves(a)) > 0.1


def test_l1_mask_selects_leaves() -> None:
    params, _ = problem(4)
    zeros = jax.tree.map(jnp.zeros_like, params)
    only_kernels = lambda p: {k: {"kernel": True, "bias": False} for k in p}
    for mask in (only_kernels, only_kernels(params)):
        tx = l1(0.5, mask=mask)
        updates, _ = tx.update(zeros, tx.init(params), params)
        for layer in params:
            np.testing.assert_array_equal(updates[layer]["kernel"],
                                          0.5 * np.sign(params[layer]["kernel"]))
            np.testing.assert_array_equal(updates[layer]["bias"], 0.0)


def test_l1_prox_is_the_soft_threshold() -> None:
    params, batch = problem(5)
    lr, lam = 0.1, 0.3
    tx = optax.chain(optax.sgd(lr), l1_prox(lr * lam))
    grads = jax.jit(jax.grad(loss))(params, batch)
    new = jax.jit(lambda g, p: optax.apply_updates(p, tx.update(g, tx.init(p), p)[0]))(
        grads, params)
    for w, g, n in zip(jax.tree.leaves(params), jax.tree.leaves(grads), jax.tree.leaves(new),
                       strict=True):
        v = np.asarray(w) - lr * np.asarray(g)
        np.testing.assert_allclose(n, np.sign(v) * np.maximum(np.abs(v) - lr * lam, 0),
                                   rtol=1e-6, atol=1e-7)
    kernel = np.asarray(new["Dense_0"]["kernel"])
    assert np.any(kernel == 0.0)  # the proximal step produces exact zeros
