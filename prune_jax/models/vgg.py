"""VGG16 with BatchNorm and a single ``512 -> num_classes`` head (fundamental-limit paper,
SPEC 2.4: 14,728,266 parameters on CIFAR-10), as ``VGG('VGG16')`` of the reference code:
thirteen ``Conv3x3(pad 1, with bias) - BN - ReLU`` layers in the configuration ``64 64 M 128
128 M 256 256 256 M 512 512 512 M 512 512 512 M``, then one linear layer. The reference
flattens a 1x1x512 map; here the final map is averaged over space, the same on 32x32 inputs,
which keeps the 512-wide head for larger inputs.
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax

from prune_jax.models.common import batch_norm, check_images, he_normal

__all__ = ["VGG", "VGG16_CONFIG"]

VGG16_CONFIG: tuple[int | str, ...] = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M",
                                       512, 512, 512, "M", 512, 512, 512, "M")
"""Layer configuration of VGG16: channel widths, ``"M"`` = 2x2 max-pool."""


class VGG(nn.Module):
    """VGG with BatchNorm; ``config`` lists conv widths and ``"M"`` for max-pools."""

    num_classes: int
    config: Sequence[int | str] = VGG16_CONFIG

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        """Logits ``(N, num_classes)``; ``train`` selects batch vs running BN statistics."""
        check_images(x, "VGG", min_size=2 ** sum(1 for c in self.config if c == "M"))
        for layer in self.config:
            if layer == "M":
                x = nn.max_pool(x, (2, 2), strides=(2, 2))
            else:
                x = nn.Conv(int(layer), (3, 3), padding=((1, 1), (1, 1)), kernel_init=he_normal)(x)
                x = nn.relu(batch_norm(train)(x))
        x = x.mean(axis=(1, 2))
        return nn.Dense(self.num_classes, kernel_init=he_normal)(x)
