"""On-device input pipeline: shuffling, normalisation, augmentation and evaluation batches.

The training loop keeps a whole split on the accelerator and, inside ``lax.scan``, gathers
``x[idx]`` (:func:`epoch_indices`) and calls :func:`preprocess`, so nothing returns to the host
between steps. :func:`padded_batches` is the host-side counterpart for evaluation and full-data
HVPs (SPEC 1.1). CIFAR augmentation zero-pads each image by 4 pixels in [0, 1] pixel space
(before normalisation, as torchvision's ``RandomCrop(32, padding=4)``), cuts a random 32x32
window and flips it horizontally with probability 1/2.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from prune_jax.data.sources import DatasetInfo, Split

__all__ = ["crop_flip", "epoch_indices", "normalize", "padded_batches", "preprocess",
           "random_crop_flip"]


def normalize(x: jax.Array, info: DatasetInfo) -> jax.Array:
    """``(x - mean) / std`` per channel on [0, 1]-scaled float pixels (last axis = channels)."""
    return (x - jnp.asarray(info.mean, jnp.float32)) / jnp.asarray(info.std, jnp.float32)


def crop_flip(x: jax.Array, offsets: jax.Array, flip: jax.Array, *, pad: int = 4) -> jax.Array:
    """Deterministic crop-and-flip of a batch ``x`` (N, H, W, C): zero-pad each image by ``pad``
    pixels, cut the ``H x W`` window at top-left ``offsets[i] = (row, col)`` (each in
    ``[0, 2 * pad]``; ``(pad, pad)`` = no shift), mirror it left-right where ``flip[i]``."""
    n, h, w, c = x.shape
    padded = jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    cropped = jax.vmap(lambda img, off: jax.lax.dynamic_slice(img, (off[0], off[1], 0), (h, w, c))
                       )(padded, offsets.astype(jnp.int32))
    return jnp.where(flip.reshape(n, 1, 1, 1), cropped[:, :, ::-1, :], cropped)


def random_crop_flip(key: jax.Array, x: jax.Array, *, pad: int = 4) -> jax.Array:
    """Random crop (``pad``-pixel zero padding, offsets uniform on ``{0, ..., 2 * pad}^2``) and
    horizontal flip (probability 1/2), independently per image (CIFAR recipe of both papers)."""
    key_crop, key_flip = jax.random.split(key)
    offsets = jax.random.randint(key_crop, (x.shape[0], 2), 0, 2 * pad + 1)
    flip = jax.random.bernoulli(key_flip, 0.5, (x.shape[0],))
    return crop_flip(x, offsets, flip, pad=pad)


@functools.partial(jax.jit, static_argnames=("info", "train"))
def preprocess(x: jax.Array, info: DatasetInfo, *, key: jax.Array | None = None,
               train: bool = False) -> jax.Array:
    """Batch of raw images -> normalised float32 model input (jitted; ``info`` static).

    uint8 ``x`` is scaled to [0, 1] (floating ``x`` is taken to be in [0, 1]); with ``train``,
    a ``key`` and ``info.augment == "crop_flip"`` the images are randomly cropped and flipped
    (:func:`random_crop_flip`); then each channel is normalised with ``info.mean``/``info.std``.
    """
    if tuple(x.shape[1:]) != info.input_shape:
        raise ValueError(f"x must have shape (N, {', '.join(map(str, info.input_shape))}) for "
                         f"{info.name!r}, got {tuple(x.shape)}")
    if x.dtype == jnp.uint8:
        x = x.astype(jnp.float32) / 255.0
    elif jnp.issubdtype(x.dtype, jnp.floating):
        x = x.astype(jnp.float32)
    else:
        raise TypeError(f"x must be uint8 or floating point, got {x.dtype}")
    if train and info.augment == "crop_flip" and key is not None:
        x = random_crop_flip(key, x)
    return normalize(x, info)


@functools.partial(jax.jit, static_argnames=("num_examples", "batch_size"))
def epoch_indices(key: jax.Array, num_examples: int, batch_size: int) -> jax.Array:
    """One epoch of shuffled batch indices, ``(num_examples // batch_size, batch_size)`` int32:
    a random permutation cut into full batches, dropping its last ``num_examples % batch_size``
    indices (a different subset each epoch). ``num_examples`` and ``batch_size`` are static."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if num_examples < batch_size:
        raise ValueError(f"num_examples ({num_examples}) must be >= batch_size ({batch_size})")
    steps = num_examples // batch_size
    perm = jax.random.permutation(key, num_examples)[: steps * batch_size]
    return perm.reshape(steps, batch_size).astype(jnp.int32)


def padded_batches(split: Split, batch_size: int) -> dict[str, np.ndarray]:
    """Every example exactly once, in order, as ``ceil(N / batch_size)`` equal batches
    ``{"x": (B, b, ...), "y": (B, b), "w": (B, b) float32}``. The last batch is padded with
    copies of example 0 of weight ``w = 0`` (real examples: 1), so weighted sums over all
    batches are exact full-data-set sums (evaluation, SPEC 1.1 HVPs)."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    n = len(split.y)
    if n == 0 or len(split.x) != n:
        raise ValueError(f"split must hold N >= 1 examples with len(x) == len(y), got "
                         f"{len(split.x)} and {n}")
    num_batches = -(-n // batch_size)
    take = np.concatenate([np.arange(n), np.zeros(num_batches * batch_size - n, np.int64)])
    w = (np.arange(num_batches * batch_size) < n).astype(np.float32)
    return {"x": split.x[take].reshape(num_batches, batch_size, *split.x.shape[1:]),
            "y": split.y[take].reshape(num_batches, batch_size),
            "w": w.reshape(num_batches, batch_size)}
