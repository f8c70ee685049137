"""BatchNorm train vs inference behaviour (``train=True`` batch statistics, ``False`` running)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from prune_jax.models import ResNet, get_model, init_variables

DIGITS = (8, 8, 1)


@pytest.fixture(scope="module", params=["cnn_small", "resnet_tiny"])
def model_and_variables(request: pytest.FixtureRequest) -> tuple:
    if request.param == "cnn_small":
        model = get_model("cnn_small", num_classes=10)
    else:  # a two-stage ResNet with one basic block per stage: identity + projection paths
        model = ResNet(num_classes=10, stage_sizes=(1, 1), block="basic")
    return model, init_variables(model, jax.random.key(0), DIGITS)


def _batch(seed: int, n: int = 6) -> jax.Array:
    return jax.random.uniform(jax.random.key(seed), (n, *DIGITS))


def test_inference_needs_no_mutable_state_and_is_per_example(model_and_variables: tuple) -> None:
    model, variables = model_and_variables
    x, other = _batch(1), _batch(2)
    out = model.apply(variables, x)  # train=False default, nothing mutable
    mixed = model.apply(variables, x.at[1:].set(other[1:]))
    # inference: example 0's output does not depend on the rest of the batch
    np.testing.assert_allclose(out[0], mixed[0], rtol=1e-5, atol=1e-6)


def test_training_uses_batch_statistics_and_updates_them(model_and_variables: tuple) -> None:
    model, variables = model_and_variables
    x, other = _batch(1), _batch(2)
    out, updates = model.apply(variables, x, train=True, mutable=["batch_stats"])
    mixed, _ = model.apply(variables, x.at[1:].set(other[1:]), train=True,
                           mutable=["batch_stats"])
    assert out.shape == (6, 10)
    # training: example 0's output depends on the other examples through batch statistics
    assert float(jnp.abs(out[0] - mixed[0]).max()) > 1e-4
    old = jax.tree.leaves(variables["batch_stats"])
    new = jax.tree.leaves(updates["batch_stats"])
    assert len(old) == len(new) > 0
    assert all(a.shape == b.shape for a, b in zip(old, new, strict=True))
    assert any(float(jnp.abs(a - b).max()) > 0 for a, b in zip(old, new, strict=True))


def test_train_mode_matches_manual_batch_normalisation() -> None:
    """First BN of cnn_small in train mode normalises with the batch's own mean/variance."""
    model = get_model("cnn_small", num_classes=10)
    variables = init_variables(model, jax.random.key(0), DIGITS)
    x = _batch(3, n=8)
    _, state = model.apply(variables, x, train=True, mutable=["batch_stats", "intermediates"],
                           capture_intermediates=True)
    conv = state["intermediates"]["Conv_0"]["__call__"][0]
    bn = state["intermediates"]["BatchNorm_0"]["__call__"][0]
    mean = conv.mean(axis=(0, 1, 2))
    var = conv.var(axis=(0, 1, 2))
    np.testing.assert_allclose(bn, (conv - mean) / jnp.sqrt(var + 1e-5), rtol=1e-4, atol=1e-4)
    # running mean moves 10% of the way to the batch mean (PyTorch momentum 0.1)
    np.testing.assert_allclose(state["batch_stats"]["BatchNorm_0"]["mean"], 0.1 * mean,
                               rtol=1e-4, atol=1e-6)


def test_models_without_batchnorm_have_no_state() -> None:
    model = get_model("mlp_small", num_classes=10)
    variables = init_variables(model, jax.random.key(0), DIGITS)
    x = _batch(4)
    out_train, updates = model.apply(variables, x, train=True, mutable=["batch_stats"])
    assert updates == {}
    np.testing.assert_array_equal(out_train, model.apply(variables, x))
