"""End to end on the offline default: the small models learn digits with SGD momentum.

The whole split sits on the device; batches are drawn with ``epoch_indices`` inside
``lax.scan`` (the training design of the data layer); evaluation uses ``padded_batches``.
"""

from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from prune_jax.data import DatasetInfo, Split, epoch_indices, load, padded_batches, preprocess
from prune_jax.models import get_model, init_variables


@functools.partial(jax.jit, static_argnames=("model", "info", "epochs", "batch_size"))
def _train(model: nn.Module, variables: dict, x: jax.Array, y: jax.Array, key: jax.Array, *,
           info: DatasetInfo, epochs: int, batch_size: int) -> dict:
    tx = optax.sgd(0.05, momentum=0.9)

    def loss_fn(params: dict, state: dict, xb: jax.Array, yb: jax.Array) -> tuple:
        logits, updates = model.apply({"params": params, **state}, xb, train=True,
                                      mutable=list(state))
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, yb).mean()
        return loss, updates

    def step(carry: tuple, idx: jax.Array) -> tuple:
        params, state, opt_state = carry
        xb = preprocess(x[idx], info, train=True)
        (loss, state), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, state, xb,
                                                                         y[idx])
        updates, opt_state = tx.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), state, opt_state), loss

    def epoch(carry: tuple, k: jax.Array) -> tuple:
        carry, losses = jax.lax.scan(step, carry, epoch_indices(k, x.shape[0], batch_size))
        return carry, losses.mean()

    params = variables["params"]
    state = {k: v for k, v in variables.items() if k != "params"}
    (params, state, _), _ = jax.lax.scan(epoch, (params, state, tx.init(params)),
                                         jax.random.split(key, epochs))
    return {"params": params, **state}


def _accuracy(model: nn.Module, variables: dict, split: Split, info: DatasetInfo) -> float:
    batches = padded_batches(split, 128)

    def correct(_: None, b: dict) -> tuple:
        logits = model.apply(variables, preprocess(b["x"], info))
        return None, jnp.sum(b["w"] * (logits.argmax(-1) == b["y"]))

    _, hits = jax.lax.scan(correct, None, jax.tree.map(jnp.asarray, batches))
    return float(hits.sum() / batches["w"].sum())


def test_mlp_small_reaches_95_percent_on_digits() -> None:
    train, info = load("digits", "train")
    test, _ = load("digits", "test")
    model = get_model("mlp_small", num_classes=info.num_classes)
    variables = init_variables(model, jax.random.key(0), info.input_shape)
    trained = _train(model, variables, jnp.asarray(train.x), jnp.asarray(train.y),
                     jax.random.key(1), info=info, epochs=20, batch_size=32)
    assert _accuracy(model, variables, test, info) < 0.5  # untrained: near chance
    assert _accuracy(model, trained, test, info) > 0.95


def test_cnn_small_trains_with_batchnorm_on_digits() -> None:
    train, info = load("digits", "train")
    test, _ = load("digits", "test")
    model = get_model("cnn_small", num_classes=info.num_classes)
    variables = init_variables(model, jax.random.key(0), info.input_shape)
    trained = _train(model, variables, jnp.asarray(train.x), jnp.asarray(train.y),
                     jax.random.key(1), info=info, epochs=5, batch_size=64)
    # running statistics were learned (they start at mean 0 / var 1)
    assert float(jnp.abs(trained["batch_stats"]["BatchNorm_0"]["mean"]).max()) > 1e-3
    assert _accuracy(model, trained, test, info) > 0.9
