"""Fully connected models: ``Linear`` and ``MLP`` (PQI paper, appendix C Table 1) and the
FC5 / FC12 presets of the fundamental-limit paper (SPEC 2.4). Both flatten their input."""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax

from prune_jax.models.common import flatten, he_normal

__all__ = ["FC5_HIDDEN", "FC12_HIDDEN", "MLP", "PQI_MLP_HIDDEN", "SMALL_MLP_HIDDEN", "Linear"]

PQI_MLP_HIDDEN: tuple[int, ...] = (128, 256)
"""PQI paper, Table 1: ``Linear(nc*H*W, 128)-ReLU-Linear(128, 256)-ReLU-Linear(256, K)``."""

SMALL_MLP_HIDDEN: tuple[int, ...] = (128, 64)
"""``mlp_small``, the offline default for 8x8 digits: 64-128-64-10 (17,226 parameters)."""

FC5_HIDDEN: tuple[int, ...] = (1000, 600, 300, 100)
"""FC5 3072-1000-600-300-100-10: 3,885,010 parameters on CIFAR-10 (SPEC 2.4)."""

FC12_HIDDEN: tuple[int, ...] = (1000, 900, 800, 750, 700, 650, 600, 500, 400, 200, 100)
"""FC12 3072-1000-900-800-750-700-650-600-500-400-200-100-10: 7,269,610 parameters (SPEC 2.4)."""


class Linear(nn.Module):
    """Multinomial logistic regression ``Linear(nc*H*W, K)`` (PQI paper, "Linear" backbone):
    7,850 parameters on (Fashion-)MNIST and 30,730 on CIFAR-10, as in the paper's Table 3."""

    num_classes: int

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        """Logits ``(N, num_classes)``; ``train`` is accepted for interface uniformity."""
        del train
        return nn.Dense(self.num_classes, kernel_init=he_normal)(flatten(x, "Linear"))


class MLP(nn.Module):
    """ReLU multilayer perceptron ``input - hidden[0] - ... - hidden[-1] - num_classes``, no
    normalisation or dropout (as in both papers); layers ``Dense_0`` to ``Dense_{len(hidden)}``."""

    num_classes: int
    hidden: Sequence[int] = PQI_MLP_HIDDEN

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        """Logits ``(N, num_classes)``; ``train`` is accepted for interface uniformity."""
        del train
        h = flatten(x, "MLP")
        for width in self.hidden:
            h = nn.relu(nn.Dense(width, kernel_init=he_normal)(h))
        return nn.Dense(self.num_classes, kernel_init=he_normal)(h)
