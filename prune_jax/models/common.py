"""Building blocks shared by the model zoo: initialisers, layer presets, shape checks, init.

Conventions of every model in :mod:`prune_jax.models` (SPEC 2.4, 3.2):

* ``__call__(self, x, train: bool = False)``; ``x`` is a batch ``(N, H, W, C)`` (MLPs flatten
  any ``(N, ...)``).
* ``train=True`` normalises with batch statistics (apply with ``mutable=["batch_stats"]``);
  ``train=False``, the default, is inference mode with BatchNorm's running statistics.
* Dense/Conv weights are Flax ``kernel`` leaves (neuron axis last), so
  :func:`prune_jax.tree.default_prunable` selects exactly the weights both papers prune.
* He (Kaiming) normal kernels (``fan_in``, gain ``sqrt(2)``) and zero biases, as the
  fundamental-limit reference code; BatchNorm with PyTorch's defaults (momentum 0.1 there =
  0.9 here, epsilon 1e-5).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from prune_jax.tree import tree_size

__all__ = ["batch_norm", "check_images", "flatten", "he_normal", "init_variables",
           "param_count"]

he_normal = nn.initializers.variance_scaling(2.0, "fan_in", "normal")
"""Kaiming normal initialiser (``fan_in``, ReLU gain): ``N(0, 2 / fan_in)``."""


def batch_norm(train: bool, name: str | None = None) -> nn.BatchNorm:
    """BatchNorm with PyTorch defaults; batch statistics when ``train``, running ones otherwise."""
    return nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5, name=name)


def check_images(x: jax.Array, model: str, min_size: int = 1) -> None:
    """Raise ``ValueError`` unless ``x`` is an ``(N, H, W, C)`` batch with H, W >= ``min_size``."""
    if jnp.ndim(x) != 4:
        raise ValueError(f"{model}: x must be a batch of images (N, H, W, C), got shape "
                         f"{jnp.shape(x)}")
    if x.shape[1] < min_size or x.shape[2] < min_size:
        raise ValueError(f"{model}: x must be at least {min_size}x{min_size} pixels, got "
                         f"{x.shape[1]}x{x.shape[2]}")


def flatten(x: jax.Array, model: str) -> jax.Array:
    """Flatten every axis but the batch axis (``(N, ...) -> (N, prod(...))``)."""
    if jnp.ndim(x) < 2:
        raise ValueError(f"{model}: x must have a batch axis and at least one feature axis, "
                         f"got shape {jnp.shape(x)}")
    return x.reshape(x.shape[0], -1)


@functools.partial(jax.jit, static_argnames=("model", "input_shape"))
def _init(model: nn.Module, key: jax.Array, input_shape: tuple[int, ...]) -> dict[str, Any]:
    return model.init(key, jnp.zeros((1, *input_shape), jnp.float32), train=False)


def _check_shape(input_shape: Sequence[int]) -> tuple[int, ...]:
    shape = tuple(int(d) for d in input_shape)
    if not shape or any(d < 1 for d in shape):
        raise ValueError(f"input_shape must be a non-empty tuple of positive sizes "
                         f"(without the batch axis), got {tuple(input_shape)}")
    return shape


def init_variables(model: nn.Module, key: jax.Array, input_shape: Sequence[int]
                   ) -> dict[str, Any]:
    """Initialise ``model`` (jitted) for inputs of shape ``input_shape`` (no batch axis): the
    Flax variables ``{"params": ...}``, plus ``"batch_stats"`` for models with BatchNorm."""
    return dict(_init(model, key, _check_shape(input_shape)))


def param_count(model: nn.Module, input_shape: Sequence[int]) -> int:
    """Number of trainable parameters (``params``: BN scale/bias included, running statistics
    excluded; the counts of SPEC 2.4), from :func:`jax.eval_shape` without allocating."""
    init = functools.partial(_init, model, input_shape=_check_shape(input_shape))
    return tree_size(jax.eval_shape(init, jax.random.key(0))["params"])
