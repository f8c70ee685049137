"""On-device pipeline: normalisation, crop/flip augmentation against a numpy reference,
epoch shuffling, and padded evaluation batches."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from prune_jax.data import (
    Split,
    crop_flip,
    dataset_info,
    epoch_indices,
    padded_batches,
    preprocess,
    random_crop_flip,
)

CIFAR = dataset_info("cifar10")
MNIST = dataset_info("mnist")
DIGITS = dataset_info("digits")


def _images(n: int, shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, *shape), dtype=np.uint8)


def _np_crop_flip(x: np.ndarray, offsets: np.ndarray, flip: np.ndarray, pad: int) -> np.ndarray:
    """Independent reference: loop over images, numpy padding and slicing."""
    n, h, w, _ = x.shape
    out = np.empty_like(x)
    for i in range(n):
        img = np.pad(x[i], ((pad, pad), (pad, pad), (0, 0)), mode="constant")
        r, c = offsets[i]
        crop = img[r:r + h, c:c + w]
        out[i] = crop[:, ::-1] if flip[i] else crop
    return out


# --------------------------------------------------------------------------- normalisation


def test_preprocess_normalises_uint8_cifar() -> None:
    x = _images(4, (32, 32, 3))
    out = np.asarray(preprocess(jnp.asarray(x), CIFAR))
    ref = (x / 255.0 - np.array(CIFAR.mean)) / np.array(CIFAR.std)
    assert out.dtype == np.float32 and out.shape == x.shape
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5)


def test_preprocess_normalises_float_digits() -> None:
    x = np.random.default_rng(0).uniform(size=(5, 8, 8, 1)).astype(np.float32)
    out = np.asarray(preprocess(jnp.asarray(x), DIGITS, key=jax.random.key(0), train=True))
    np.testing.assert_allclose(out, (x - DIGITS.mean[0]) / DIGITS.std[0], rtol=1e-5, atol=1e-6)


def test_normalised_constant_images_have_expected_values() -> None:
    x = np.zeros((1, 28, 28, 1), np.uint8)
    np.testing.assert_allclose(preprocess(jnp.asarray(x), MNIST), -0.1307 / 0.3081, rtol=1e-6)


def test_no_augmentation_without_key_or_for_mnist_or_in_eval() -> None:
    x = jnp.asarray(_images(6, (32, 32, 3)))
    plain = preprocess(x, CIFAR)
    np.testing.assert_array_equal(preprocess(x, CIFAR, train=True), plain)
    np.testing.assert_array_equal(preprocess(x, CIFAR, key=jax.random.key(0)), plain)
    m = jnp.asarray(_images(6, (28, 28, 1)))
    np.testing.assert_array_equal(preprocess(m, MNIST, key=jax.random.key(0), train=True),
                                  preprocess(m, MNIST))
    assert not np.array_equal(preprocess(x, CIFAR, key=jax.random.key(0), train=True), plain)


# --------------------------------------------------------------------------- augmentation


def test_crop_flip_matches_numpy_reference() -> None:
    x = _images(9, (32, 32, 3))
    rng = np.random.default_rng(1)
    offsets = rng.integers(0, 9, (9, 2))
    offsets[:3] = [[0, 0], [8, 8], [4, 4]]  # extreme corners and the identity window
    flip = rng.integers(0, 2, 9).astype(bool)
    flip[:3] = [True, False, False]
    out = crop_flip(jnp.asarray(x), jnp.asarray(offsets), jnp.asarray(flip), pad=4)
    np.testing.assert_array_equal(np.asarray(out), _np_crop_flip(x, offsets, flip, 4))
    # identity window without flip is the image itself; corners bring in zero padding
    np.testing.assert_array_equal(np.asarray(out[2]), x[2])
    assert np.all(np.asarray(out[0])[:4, :, :] == 0) and np.all(np.asarray(out[1])[-4:] == 0)


def test_random_crop_flip_outputs_are_genuine_crops_and_flips() -> None:
    n, pad = 64, 4
    x = _images(n, (12, 10, 3), seed=2)  # random pixels: every window is unique
    out = np.asarray(random_crop_flip(jax.random.key(3), jnp.asarray(x), pad=pad))
    found = []
    for i in range(n):
        hits = [(r, c, f) for r in range(2 * pad + 1) for c in range(2 * pad + 1)
                for f in (False, True)
                if np.array_equal(_np_crop_flip(x[i:i + 1], np.array([[r, c]]),
                                                np.array([f]), pad)[0], out[i])]
        assert len(hits) == 1, f"image {i} is not a crop/flip of its input"
        found.append(hits[0])
    rows, cols, flips = map(np.array, zip(*found, strict=True))
    assert 0.25 < flips.mean() < 0.75  # flips happen about half the time
    assert len(np.unique(rows)) >= 6 and len(np.unique(cols)) >= 6  # offsets spread over 0..8
    assert rows.min() >= 0 and rows.max() <= 2 * pad


def test_augmentation_is_key_deterministic_and_per_example() -> None:
    x = jnp.asarray(np.repeat(_images(1, (32, 32, 3)), 16, axis=0))
    a = preprocess(x, CIFAR, key=jax.random.key(5), train=True)
    b = preprocess(x, CIFAR, key=jax.random.key(5), train=True)
    c = preprocess(x, CIFAR, key=jax.random.key(6), train=True)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    # identical inputs get different random crops/flips within one batch
    assert len({np.asarray(a[i]).tobytes() for i in range(16)}) > 4


@pytest.mark.parametrize(("x", "err", "match"), [
    (np.zeros((2, 28, 28, 1), np.uint8), ValueError, r"x must have shape \(N, 32, 32, 3\)"),
    (np.zeros((32, 32, 3), np.uint8), ValueError, "x must have shape"),
    (np.zeros((2, 32, 32, 3), np.int32), TypeError, "x must be uint8 or floating"),
])
def test_preprocess_rejects_bad_input(x: np.ndarray, err: type, match: str) -> None:
    with pytest.raises(err, match=match):
        preprocess(jnp.asarray(x), CIFAR)


# --------------------------------------------------------------------------- epoch indices


def test_epoch_indices_is_a_permutation_without_remainder() -> None:
    idx = np.asarray(epoch_indices(jax.random.key(0), 103, 10))
    assert idx.shape == (10, 10) and idx.dtype == np.int32
    flat = idx.ravel()
    assert len(np.unique(flat)) == 100 and flat.min() >= 0 and flat.max() < 103
    assert not np.array_equal(flat, np.arange(100))  # shuffled


def test_epoch_indices_keys() -> None:
    a = epoch_indices(jax.random.key(1), 50, 7)
    np.testing.assert_array_equal(a, epoch_indices(jax.random.key(1), 50, 7))
    assert not np.array_equal(a, epoch_indices(jax.random.key(2), 50, 7))
    # the dropped remainder differs between epochs, so every example is eventually seen
    seen = np.unique(np.concatenate([np.asarray(epoch_indices(k, 50, 7)).ravel()
                                     for k in jax.random.split(jax.random.key(3), 20)]))
    np.testing.assert_array_equal(seen, np.arange(50))


def test_epoch_indices_inside_jit_and_scan() -> None:
    x = jnp.arange(40.0)

    @jax.jit
    def epoch_sums(keys: jax.Array) -> jax.Array:
        def body(carry: None, key: jax.Array) -> tuple[None, jax.Array]:
            return carry, x[epoch_indices(key, 40, 8)].sum()
        return jax.lax.scan(body, None, keys)[1]

    np.testing.assert_allclose(epoch_sums(jax.random.split(jax.random.key(0), 3)),
                               [x.sum()] * 3)


@pytest.mark.parametrize(("n", "b", "match"), [(10, 0, "batch_size must be >= 1"),
                                               (5, 6, r"num_examples \(5\) must be >= batch")])
def test_epoch_indices_errors(n: int, b: int, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        epoch_indices(jax.random.key(0), n, b)


# --------------------------------------------------------------------------- padded batches


@settings(max_examples=30, deadline=None)
@given(n=st.integers(1, 60), b=st.integers(1, 25))
def test_padded_batches_cover_every_example_once(n: int, b: int) -> None:
    x = np.arange(n * 2, dtype=np.float32).reshape(n, 2, 1, 1) + 1
    split = Split(x=x, y=np.arange(n, dtype=np.int32))
    out = padded_batches(split, b)
    num = -(-n // b)
    assert out["x"].shape == (num, b, 2, 1, 1) and out["y"].shape == out["w"].shape == (num, b)
    assert out["w"].dtype == np.float32
    w, y = out["w"].ravel(), out["y"].ravel()
    assert set(np.unique(w)) <= {0.0, 1.0} and w.sum() == n
    np.testing.assert_array_equal(np.sort(y[w == 1]), np.arange(n))  # each once, weight 1
    assert np.all(w[n:] == 0) and np.all(w[:n] == 1)  # padding only at the end
    np.testing.assert_array_equal(out["x"].reshape(-1, 2, 1, 1)[w == 1], x)
    # weighted sums are exact full-data-set sums
    assert (out["w"][..., None, None, None] * out["x"]).sum() == x.sum()


@pytest.mark.parametrize("bad", [0, -1, 2.5, True])
def test_padded_batches_bad_batch_size(bad: object) -> None:
    split = Split(x=np.zeros((3, 2, 2, 1), np.uint8), y=np.zeros(3, np.int32))
    with pytest.raises(ValueError, match="batch_size"):
        padded_batches(split, bad)  # type: ignore[arg-type]


def test_padded_batches_bad_split() -> None:
    with pytest.raises(ValueError, match="split"):
        padded_batches(Split(x=np.zeros((3, 2)), y=np.zeros(2, np.int32)), 2)
