"""A small 1-D CNN for sequences such as MNIST-1D (``(N, L, C)`` inputs), after Greydanus's
(2020) reference CNN: three ``Conv1d(kernel 5, stride 2)`` - ReLU layers, then a linear
classifier. No normalisation, so the Hessian has no BatchNorm mode to choose."""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from prune_jax.models.common import he_normal

__all__ = ["CNN1D", "CNN1D_FEATURES"]

CNN1D_FEATURES: tuple[int, ...] = (32, 32, 32)
"""Channels of ``cnn1d``: 40 -> 20 -> 10 -> 5 positions, 12,106 parameters on MNIST-1D."""


class CNN1D(nn.Module):
    """``Conv1d(k=5, stride 2, SAME) - ReLU`` per width in ``features``; flatten; linear head."""

    num_classes: int
    features: Sequence[int] = CNN1D_FEATURES

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        """Logits ``(N, num_classes)``; ``train`` is accepted for interface uniformity."""
        del train
        if jnp.ndim(x) != 3:
            raise ValueError(f"CNN1D: x must be a batch of sequences (N, L, C), got shape "
                             f"{jnp.shape(x)}")
        for width in self.features:
            x = nn.relu(nn.Conv(width, (5,), strides=(2,), padding="SAME",
                                kernel_init=he_normal)(x))
        return nn.Dense(self.num_classes, kernel_init=he_normal)(x.reshape(x.shape[0], -1))
