"""CIFAR ResNets (He et al. 2016) as used by both papers: ResNet18 and ResNet50.

Stem ``Conv3x3(64) - BN - ReLU`` without max-pool; four stages of widths 64-512 with strides
1, 2, 2, 2; global average pooling; one linear head. Convolutions have no bias (BN follows
each); a block whose stride or width changes gets a ``Conv1x1(stride) - BN`` shortcut;
bottlenecks stride on the 3x3 convolution. The fundamental-limit reference code's ResNet:
11,220,132 (ResNet18) and 23,705,252 (ResNet50) parameters on CIFAR-100 (SPEC 2.4); the PQI
paper's ResNet18 is the same network.
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax

from prune_jax.models.common import batch_norm, check_images, he_normal

__all__ = ["BasicBlock", "Bottleneck", "ResNet"]

def _conv(features: int, size: int, strides: int = 1, name: str | None = None) -> nn.Conv:
    pad = (size // 2, size // 2)  # 1 for 3x3, 0 for 1x1
    return nn.Conv(features, (size, size), strides=(strides, strides), padding=(pad, pad),
                   use_bias=False, kernel_init=he_normal, name=name)


def _shortcut(x: jax.Array, out: int, strides: int, train: bool) -> jax.Array:
    if strides == 1 and x.shape[-1] == out:
        return x
    return batch_norm(train, name="shortcut_bn")(_conv(out, 1, strides, name="shortcut_conv")(x))


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers with an identity or projection shortcut (ResNet18/34)."""

    features: int
    strides: int = 1

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        """Apply the block; ``train`` selects batch vs running BN statistics."""
        y = nn.relu(batch_norm(train)(_conv(self.features, 3, self.strides)(x)))
        y = batch_norm(train)(_conv(self.features, 3)(y))
        return nn.relu(y + _shortcut(x, self.features, self.strides, train))


class Bottleneck(nn.Module):
    """1x1 - 3x3 (strided) - 1x1 conv-BN layers, output width ``4 * features`` (ResNet50+)."""

    features: int
    strides: int = 1

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        """Apply the block; ``train`` selects batch vs running BN statistics."""
        out = 4 * self.features
        y = nn.relu(batch_norm(train)(_conv(self.features, 1)(x)))
        y = nn.relu(batch_norm(train)(_conv(self.features, 3, self.strides)(y)))
        y = batch_norm(train)(_conv(out, 1)(y))
        return nn.relu(y + _shortcut(x, out, self.strides, train))


class ResNet(nn.Module):
    """CIFAR ResNet: ``block`` is ``"basic"`` or ``"bottleneck"``; ``stage_sizes`` blocks/stage.

    ResNet18 = ``("basic", (2, 2, 2, 2))``, ResNet50 = ``("bottleneck", (3, 4, 6, 3))``.
    Blocks are named ``stage{s}_block{b}``; the head is ``head``.
    """

    num_classes: int
    stage_sizes: Sequence[int] = (2, 2, 2, 2)
    block: str = "basic"

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        """Logits ``(N, num_classes)``; ``train`` selects batch vs running BN statistics."""
        blocks = {"basic": BasicBlock, "bottleneck": Bottleneck}
        if self.block not in blocks:
            raise ValueError(f"ResNet: block must be one of {sorted(blocks)}, got {self.block!r}")
        check_images(x, "ResNet", min_size=2 ** (len(self.stage_sizes) - 1))
        x = nn.relu(batch_norm(train, name="stem_bn")(_conv(64, 3, name="stem_conv")(x)))
        for s, num_blocks in enumerate(self.stage_sizes):
            for b in range(num_blocks):
                strides = 2 if s > 0 and b == 0 else 1
                x = blocks[self.block](64 * 2**s, strides, name=f"stage{s}_block{b}")(x, train)
        x = x.mean(axis=(1, 2))
        return nn.Dense(self.num_classes, kernel_init=he_normal, name="head")(x)
