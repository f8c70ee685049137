"""Data sources: whole splits as contiguous host arrays, plus what the pipeline needs to know.

``load(name, split)`` returns a :class:`Split` (all examples of the split in one array) and a
:class:`DatasetInfo` (shape, classes, normalisation constants, augmentation).

* ``"digits"``: scikit-learn's embedded 8x8 digits, the offline default, split by
  ``train_test_split(test_size=360, stratify=y, random_state=0)`` into 1,437 train / 360 test
  images; pixels (0..16) scaled to float32 in [0, 1]; mean/std of the train split.
* ``"mnist1d"``: MNIST-1D (Greydanus 2020), generated locally by the ``mnist1d`` package (never
  downloaded): 10,000 length-40 sequences with the package's default transforms (seed 42),
  8,000 train / 2,000 test, shaped ``(40, 1)`` and standardised by the package. Harder than
  digits (a 40-128-64-10 MLP reaches about 80-90%), so accuracy against sparsity has a real cliff.
* ``"mnist"``, ``"fashion_mnist"``, ``"cifar10"``, ``"cifar100"``: ``tfds.data_source``
  (ArrayRecord, random access, read in bulk into one uint8 array; TensorFlow is not needed to
  *read*, but is needed once to *build* an image data set:
  ``tfds build mnist --file_format=array_record``, or copy a prepared ``data_dir``). Nothing
  is cached outside ``data_dir``.
  TinyImageNet has no tfds builder in tensorflow-datasets 4.9.10 and is not offered.

Normalisation constants (per channel, on [0, 1] pixels): MNIST and CIFAR-10/100 as in the
fundamental-limit reference code (the PQI code's CIFAR-10 std (0.2023, 0.1994, 0.2010) is not
reproduced); Fashion-MNIST its train-set statistics. Augmentation: CIFAR "crop_flip" (the
torchvision recipe of the fundamental-limit code; the PQI code pads by reflection instead),
MNIST-like sets "none" (both papers).
"""

from __future__ import annotations

import functools
import random
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

__all__ = ["DATASET_NAMES", "SPLITS", "DatasetInfo", "Split", "dataset_info", "load",
           "load_digits", "load_mnist1d", "split_from_source"]

SPLITS: tuple[str, ...] = ("train", "test")


class DatasetInfo(NamedTuple):
    """Static description of a data set (hashable: usable as a static ``jit`` argument)."""

    name: str
    input_shape: tuple[int, ...]  # one example: (H, W, C) images, (L, C) sequences
    num_classes: int
    mean: tuple[float, ...]  # per channel, on [0, 1]-scaled pixels
    std: tuple[float, ...]
    augment: str  # "none" | "crop_flip"


class Split(NamedTuple):
    """A whole split: ``x`` (N, H, W, C) uint8 (float32 in [0, 1] for digits), ``y`` (N,) int32."""

    x: np.ndarray
    y: np.ndarray


_INFOS: dict[str, DatasetInfo] = {
    "digits": DatasetInfo("digits", (8, 8, 1), 10, (0.3054,), (0.3761,), "none"),
    "mnist1d": DatasetInfo("mnist1d", (40, 1), 10, (0.0,), (1.0,), "none"),
    "mnist": DatasetInfo("mnist", (28, 28, 1), 10, (0.1307,), (0.3081,), "none"),
    "fashion_mnist": DatasetInfo("fashion_mnist", (28, 28, 1), 10, (0.2860,), (0.3530,), "none"),
    "cifar10": DatasetInfo("cifar10", (32, 32, 3), 10, (0.4914, 0.4822, 0.4465),
                           (0.2470, 0.2435, 0.2616), "crop_flip"),
    "cifar100": DatasetInfo("cifar100", (32, 32, 3), 100, (0.5071, 0.4865, 0.4409),
                            (0.2673, 0.2564, 0.2762), "crop_flip"),
}

DATASET_NAMES: tuple[str, ...] = tuple(_INFOS)
"""Names accepted by :func:`load`."""


def dataset_info(name: str) -> DatasetInfo:
    """The :class:`DatasetInfo` of data set ``name`` (no data is read)."""
    if name not in _INFOS:
        raise ValueError(f"name must be one of {', '.join(DATASET_NAMES)}; got {name!r}")
    return _INFOS[name]


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")


def _check_max_examples(max_examples: int | None) -> None:
    if max_examples is not None and (isinstance(max_examples, bool)
                                     or not isinstance(max_examples, int) or max_examples < 1):
        raise ValueError(f"max_examples must be None or a positive int, got {max_examples!r}")


def load_digits(split: str = "train") -> Split:
    """scikit-learn digits as 8x8x1 float32 images in [0, 1] with the documented stratified
    1437/360 train/test split (``random_state=0``); indices keep the original order."""
    from sklearn.datasets import load_digits as sk_load_digits
    from sklearn.model_selection import train_test_split

    _check_split(split)
    digits = sk_load_digits()
    labels = digits.target.astype(np.int32)
    train, test = train_test_split(np.arange(len(labels)), test_size=360, stratify=labels,
                                   random_state=0)
    idx = np.sort(train if split == "train" else test)
    x = (digits.images[idx] / 16.0).astype(np.float32)[..., None]
    return Split(x=np.ascontiguousarray(x), y=labels[idx])


@functools.cache
def _mnist1d() -> dict[str, np.ndarray]:
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    args.num_samples, args.seed = 10_000, 42
    np_state, py_state = np.random.get_state(), random.getstate()  # noqa: NPY002 (restored)
    try:  # make_dataset seeds numpy's and Python's global generators: leave them as found
        return make_dataset(args)
    finally:
        np.random.set_state(np_state)  # noqa: NPY002 (the caller's global state, restored)
        random.setstate(py_state)


def load_mnist1d(split: str = "train") -> Split:
    """MNIST-1D generated locally (once per process, about 3 s): ``(N, 40, 1)`` float32
    sequences and int32 labels, 8,000 train / 2,000 test."""
    _check_split(split)
    data = _mnist1d()
    x, y = (data["x"], data["y"]) if split == "train" else (data["x_test"], data["y_test"])
    return Split(x=np.ascontiguousarray(x[..., None], dtype=np.float32),
                 y=np.asarray(y, np.int32))


def split_from_source(source: Sequence[Mapping[str, Any]], *, image_key: str = "image",
                      label_key: str = "label", max_examples: int | None = None,
                      chunk_size: int = 4096) -> Split:
    """Decode a random-access source of ``{image_key: (H, W, C) uint8, label_key: int}``
    records (e.g. ``tfds.data_source(...)``) into one contiguous :class:`Split`: the first
    ``max_examples`` records (all when ``None``), read in chunks of ``chunk_size``."""
    _check_max_examples(max_examples)
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    n = len(source) if max_examples is None else min(max_examples, len(source))
    if n == 0:
        raise ValueError("source is empty")
    # Bulk reads (``__getitems__``: parallel ArrayRecord reads) where they work; one
    # ``source[i]`` per key for plain sequences and for ``tfds.testing.mock_data`` sources
    # (tensorflow-datasets 4.9.10), whose ``__getitems__`` mock is bound wrongly (TypeError).
    try:
        read = source.__getitems__
        read([0])
    except (AttributeError, TypeError):
        read = lambda keys: [source[k] for k in keys]
    first = source[0]
    if image_key not in first or label_key not in first:
        raise ValueError(f"records must have keys {image_key!r} and {label_key!r}; "
                         f"got {sorted(first)}")
    image = np.asarray(first[image_key])
    if image.dtype != np.uint8 or image.ndim != 3:
        raise ValueError(f"{image_key!r} must be (H, W, C) uint8, got {image.shape} {image.dtype}")
    x = np.empty((n, *image.shape), np.uint8)
    y = np.empty((n,), np.int32)
    for start in range(0, n, chunk_size):
        records = read(list(range(start, min(start + chunk_size, n))))
        stop = start + len(records)
        x[start:stop] = np.stack([np.asarray(r[image_key]) for r in records])
        y[start:stop] = [int(r[label_key]) for r in records]
    return Split(x=x, y=y)


def load(name: str, split: str = "train", *, data_dir: str | None = None,
         max_examples: int | None = None) -> tuple[Split, DatasetInfo]:
    """Load a whole split (``"train"`` or ``"test"``) of data set ``name`` (one of
    :data:`DATASET_NAMES`) into host memory; returns ``(Split, DatasetInfo)``. ``data_dir`` is
    tfds's data directory; ``max_examples`` keeps the first examples of the split (tfds stores
    records shuffled, so this is a fixed pseudo-random subset)."""
    info = dataset_info(name)
    _check_split(split)
    _check_max_examples(max_examples)
    if name in ("digits", "mnist1d"):
        data = load_digits(split) if name == "digits" else load_mnist1d(split)
        data = Split(x=data.x[:max_examples], y=data.y[:max_examples])
    else:
        import tensorflow_datasets as tfds

        try:
            source = tfds.data_source(name, split=split, data_dir=data_dir)
        except Exception as err:  # re-raised with the cause attached and a way forward
            raise RuntimeError(
                f"could not open tfds data set {name!r} (split {split!r}, data_dir="
                f"{data_dir!r}) as an ArrayRecord data source: {err}. Prepare it once with "
                f"`tfds build {name} --file_format=array_record --data_dir=...` (building "
                "image data sets needs TensorFlow), or use name='digits' offline") from err
        data = split_from_source(source, max_examples=max_examples)
    if data.x.shape[1:] != info.input_shape:
        raise ValueError(f"{name}: decoded images have shape {data.x.shape[1:]}, expected "
                         f"{info.input_shape}")
    return data, info
