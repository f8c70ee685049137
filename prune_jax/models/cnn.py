"""The PQI paper's CNN (appendix C, Table 2) and a small variant for 8x8 digits.

Each stage is ``Conv3x3(pad 1) - BatchNorm - ReLU``, followed by a 2x2 max-pool for the first
``num_pools`` stages; then global average pooling and ``Dense(num_classes)``. Table 2 lists a
max-pool after all four stages (``num_pools=4``); the default is the reference code's 3
(``src/models/cnn.py`` drops the last pool), which produced the published numbers and also
runs on 8x8 inputs (SPEC 3.2). Either way 1,556,874 parameters for 1 input channel and 10
classes, 1,558,026 for 3 channels (the "1.6 M" of Table 3).
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax

from prune_jax.models.common import batch_norm, check_images, he_normal

__all__ = ["CNN", "PQI_CNN_FEATURES", "SMALL_CNN_FEATURES"]

PQI_CNN_FEATURES: tuple[int, ...] = (64, 128, 256, 512)
"""Channel widths of the PQI paper's CNN (Table 2)."""

SMALL_CNN_FEATURES: tuple[int, ...] = (16, 32, 64)
"""Widths of ``cnn_small`` (with ``num_pools=2``: 8x8 -> 4x4 -> 2x2 -> global average)."""


class CNN(nn.Module):
    """Conv-BN-ReLU stages with max-pools after the first ``num_pools``; GAP; linear head."""

    num_classes: int
    features: Sequence[int] = PQI_CNN_FEATURES
    num_pools: int = 3

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        """Logits ``(N, num_classes)``; ``train`` selects batch vs running BN statistics."""
        if not 0 <= self.num_pools <= len(self.features):
            raise ValueError(f"CNN: num_pools must be in [0, {len(self.features)}], "
                             f"got {self.num_pools}")
        check_images(x, "CNN", min_size=2**self.num_pools)
        for i, width in enumerate(self.features):
            x = nn.Conv(width, (3, 3), padding=((1, 1), (1, 1)), kernel_init=he_normal)(x)
            x = nn.relu(batch_norm(train)(x))
            if i < self.num_pools:
                x = nn.max_pool(x, (2, 2), strides=(2, 2))
        x = x.mean(axis=(1, 2))
        return nn.Dense(self.num_classes, kernel_init=he_normal)(x)
