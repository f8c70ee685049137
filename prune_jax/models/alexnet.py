"""AlexNet as run on CIFAR-10 by the fundamental-limit paper's reference code (SPEC 2.4).

The paper gives no AlexNet table. Its code (Global-One-shot-Pruning, ``model.py``,
``trainer.py``) upsamples each 32x32 image 7x by nearest-neighbour interpolation (224x224) and
applies the single-tower AlexNet without dropout or normalisation:
``Conv11x11(96, stride 4, pad 1) - ReLU - MaxPool3/2 - Conv5x5(256, pad 2) - ReLU - MaxPool3/2
- Conv3x3(384) - ReLU - Conv3x3(384) - ReLU - Conv3x3(256) - ReLU - MaxPool3/2
- Dense(4096) - ReLU - Dense(4096) - ReLU - Dense(num_classes)``.
Here the upsampling (``upsample=7``) is inside the model, which so takes 32x32 CIFAR batches;
46,787,978 parameters on CIFAR-10 (the dense input width follows the feature-map size).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from prune_jax.models.common import check_images, he_normal

__all__ = ["AlexNet", "upsample_nearest"]

_MIN_SIZE = 65  # smallest side for which the three 3x3/2 max-pools leave a 1x1 map


def upsample_nearest(x: jax.Array, factor: int) -> jax.Array:
    """Nearest-neighbour upsampling of ``(N, H, W, C)`` by an integer factor (as
    ``torch.nn.functional.interpolate(x, scale_factor=factor)`` with mode ``"nearest"``)."""
    return jnp.repeat(jnp.repeat(x, factor, axis=1), factor, axis=2)


class AlexNet(nn.Module):
    """Single-tower AlexNet on ``upsample``-times enlarged inputs (reference-code variant)."""

    num_classes: int
    upsample: int = 7

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        """Logits ``(N, num_classes)``; ``train`` is accepted for interface uniformity."""
        del train
        if self.upsample < 1:
            raise ValueError(f"AlexNet: upsample must be >= 1, got {self.upsample}")
        check_images(x, "AlexNet")
        x = upsample_nearest(x, self.upsample)
        if min(x.shape[1:3]) < _MIN_SIZE:
            raise ValueError(f"AlexNet: x upsampled by {self.upsample} is {x.shape[1]}x"
                             f"{x.shape[2]}; at least {_MIN_SIZE}x{_MIN_SIZE} is needed "
                             "(use upsample=7 for 32x32 CIFAR images)")

        def conv(h: jax.Array, features: int, size: int, strides: int, pad: int) -> jax.Array:
            layer = nn.Conv(features, (size, size), strides=(strides, strides),
                            padding=((pad, pad), (pad, pad)), kernel_init=he_normal)
            return nn.relu(layer(h))

        pool = lambda h: nn.max_pool(h, (3, 3), strides=(2, 2))
        x = pool(conv(x, 96, 11, 4, 1))
        x = pool(conv(x, 256, 5, 1, 2))
        x = conv(conv(conv(x, 384, 3, 1, 1), 384, 3, 1, 1), 256, 3, 1, 1)
        x = pool(x).reshape(x.shape[0], -1)
        x = nn.relu(nn.Dense(4096, kernel_init=he_normal)(x))
        x = nn.relu(nn.Dense(4096, kernel_init=he_normal)(x))
        return nn.Dense(self.num_classes, kernel_init=he_normal)(x)
