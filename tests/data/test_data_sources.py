"""Data sources: digits split, tfds ``data_source`` (mocked and real ArrayRecord), errors.

tensorflow-datasets 4.9.10 notes (checked here, TensorFlow not installed):
* ``tfds.testing.mock_data`` serves ``tfds.data_source`` through a mocked ArrayRecord reader
  whose ``__getitem__`` works but whose ``__getitems__`` raises ``TypeError`` (the mock is not
  bound to the instance); the loader falls back to per-record reads for it.
* Image features cannot be *built* without TensorFlow (PNG encoding uses ``tf.image``), so the
  real ArrayRecord path is tested with a tiny builder whose images are ``Tensor`` features.
* Every builder leaves an empty ``tmp*tfds`` directory (``DatasetInfo.initialize_from_bucket``
  calls ``tempfile.mkdtemp``); the tests redirect those into pytest's temporary directory.
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tensorflow_datasets as tfds
from sklearn.datasets import load_digits as sk_load_digits

from prune_jax.data import DATASET_NAMES, dataset_info, load, split_from_source


@pytest.fixture(autouse=True)
def _tfds_temp_dirs(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))


# --------------------------------------------------------------------------- digits


def test_digits_split_sizes_shapes_and_dtypes() -> None:
    train, info = load("digits", "train")
    test, _ = load("digits", "test")
    assert train.x.shape == (1437, 8, 8, 1) and test.x.shape == (360, 8, 8, 1)
    assert train.x.dtype == np.float32 and train.y.dtype == np.int32
    assert 0.0 <= train.x.min() and train.x.max() <= 1.0 and train.x.max() == 1.0
    assert info.input_shape == (8, 8, 1) and info.num_classes == 10 and info.augment == "none"


def test_digits_split_is_a_stratified_partition() -> None:
    train, _ = load("digits", "train")
    test, _ = load("digits", "test")
    counts_test = np.bincount(test.y, minlength=10)
    counts_all = np.bincount(sk_load_digits().target, minlength=10)
    # stratified: every class's test share is 360/1797 up to rounding
    assert np.all(np.abs(counts_test - counts_all * 360 / 1797) < 1)
    assert np.array_equal(np.bincount(train.y, minlength=10) + counts_test, counts_all)
    # together the splits are exactly the 1797 digits (as a multiset of (image, label) rows)
    rows = np.concatenate([np.c_[s.x.reshape(len(s.y), -1) * 16, s.y] for s in (train, test)])
    full = sk_load_digits()
    ref = np.c_[full.images.reshape(1797, -1), full.target]
    assert rows.shape == ref.shape
    np.testing.assert_array_equal(rows[np.lexsort(rows.T)], ref[np.lexsort(ref.T)])


def test_digits_is_deterministic_and_max_examples() -> None:
    a, _ = load("digits", "test")
    b, _ = load("digits", "test", max_examples=10)
    np.testing.assert_array_equal(a.x[:10], b.x)
    np.testing.assert_array_equal(a.y[:10], b.y)


def test_digits_normalisation_constants_are_train_statistics() -> None:
    train, info = load("digits", "train")
    assert abs(info.mean[0] - train.x.mean()) < 1e-4
    assert abs(info.std[0] - train.x.std()) < 1e-4


# --------------------------------------------------------------------------- tfds (mocked)


@pytest.mark.parametrize(("name", "shape", "classes"),
                         [("mnist", (28, 28, 1), 10), ("fashion_mnist", (28, 28, 1), 10),
                          ("cifar10", (32, 32, 3), 10), ("cifar100", (32, 32, 3), 100)])
def test_tfds_mock_shapes_dtypes_ranges(name: str, shape: tuple[int, ...], classes: int) -> None:
    with tfds.testing.mock_data(num_examples=24):
        train, info = load(name, "train")
        test, _ = load(name, "test", max_examples=5)
    assert train.x.shape == (24, *shape) and test.x.shape == (5, *shape)
    assert train.x.dtype == np.uint8 and train.y.dtype == np.int32
    assert train.x.flags["C_CONTIGUOUS"]
    assert train.x.max() > 200 and train.x.min() < 50  # random uint8 pixels, full range
    assert 0 <= train.y.min() and train.y.max() < classes
    assert len(np.unique(train.y)) > 1
    assert info.input_shape == shape and info.num_classes == classes
    assert len(info.mean) == len(info.std) == shape[-1]
    assert info.augment == ("crop_flip" if name.startswith("cifar") else "none")
    assert "tensorflow" not in sys.modules


def test_tfds_mock_is_deterministic() -> None:
    with tfds.testing.mock_data(num_examples=16):
        a, _ = load("cifar10", "train")
        b, _ = load("cifar10", "train")
    np.testing.assert_array_equal(a.x, b.x)
    np.testing.assert_array_equal(a.y, b.y)


# --------------------------------------------------------------------------- real ArrayRecord


class _TinyTensors(tfds.core.GeneratorBasedBuilder):
    """A 2-split image data set stored as ArrayRecord, buildable without TensorFlow."""

    VERSION = tfds.core.Version("1.0.0")

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
            "image": tfds.features.Tensor(shape=(6, 5, 3), dtype=np.uint8),
            "label": tfds.features.ClassLabel(num_classes=4)}))

    def _split_generators(self, dl_manager: Any) -> dict:
        del dl_manager
        return {"train": self._generate_examples(23)}

    def _generate_examples(self, n: int):  # type: ignore[override]
        for i in range(n):
            yield i, {"image": _tiny_image(i), "label": i % 4}


def _tiny_image(i: int) -> np.ndarray:
    return np.random.default_rng(i).integers(0, 256, (6, 5, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def tiny_source(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sequence[Any]]:
    data_dir = Path(tmp_path_factory.mktemp("tfds"))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(tempfile, "tempdir", str(data_dir))
        builder = _TinyTensors(data_dir=str(data_dir / "data"), file_format="array_record")
        builder.download_and_prepare()
        yield builder.as_data_source(split="train")


@pytest.mark.parametrize("chunk_size", [1, 5, 4096])
def test_real_array_record_source(tiny_source: Sequence[Any], chunk_size: int) -> None:
    split = split_from_source(tiny_source, chunk_size=chunk_size)
    assert split.x.shape == (23, 6, 5, 3) and split.x.dtype == np.uint8
    assert split.y.dtype == np.int32
    # tfds shuffles records on disk: compare as a set of (image, label) pairs
    got = sorted((s.tobytes(), int(t)) for s, t in zip(split.x, split.y, strict=True))
    ref = sorted((_tiny_image(i).tobytes(), i % 4) for i in range(23))
    assert got == ref
    assert "tensorflow" not in sys.modules


def test_real_source_is_read_in_bulk(tiny_source: Sequence[Any]) -> None:
    calls: list[int] = []

    class Counting:
        def __len__(self) -> int:
            return len(tiny_source)

        def __getitem__(self, i: int) -> Any:
            return tiny_source[i]

        def __getitems__(self, keys: list[int]) -> Any:
            calls.append(len(keys))
            return tiny_source.__getitems__(keys)

    split = split_from_source(Counting(), chunk_size=10, max_examples=21)
    assert len(split.y) == 21
    assert calls == [1, 10, 10, 1]  # one probe, then chunks of 10
    np.testing.assert_array_equal(split.x, split_from_source(tiny_source).x[:21])


def test_plain_sequence_source() -> None:
    records = [{"image": np.full((2, 2, 1), i, np.uint8), "label": i} for i in range(5)]
    split = split_from_source(records, chunk_size=2)
    np.testing.assert_array_equal(split.x[:, 0, 0, 0], np.arange(5))
    np.testing.assert_array_equal(split.y, np.arange(5))


# --------------------------------------------------------------------------- errors


def test_unknown_dataset_lists_names() -> None:
    with pytest.raises(ValueError, match="name must be one of digits, mnist"):
        load("svhn")
    with pytest.raises(ValueError, match="cifar100"):
        dataset_info("imagenet")
    assert "tiny_imagenet" not in DATASET_NAMES


@pytest.mark.parametrize("split", ["validation", "train[:10%]", ""])
def test_bad_split(split: str) -> None:
    with pytest.raises(ValueError, match="split must be one of"):
        load("digits", split)


@pytest.mark.parametrize("bad", [0, -3, 1.5, True])
def test_bad_max_examples(bad: object) -> None:
    with pytest.raises(ValueError, match="max_examples"):
        load("digits", max_examples=bad)  # type: ignore[arg-type]


def test_bad_records() -> None:
    with pytest.raises(ValueError, match="source is empty"):
        split_from_source([])
    with pytest.raises(ValueError, match="keys 'image' and 'label'"):
        split_from_source([{"img": np.zeros((2, 2, 1), np.uint8), "label": 0}])
    with pytest.raises(ValueError, match="uint8"):
        split_from_source([{"image": np.zeros((2, 2, 1), np.float32), "label": 0}])
    with pytest.raises(ValueError, match="chunk_size"):
        split_from_source([{"image": np.zeros((2, 2, 1), np.uint8), "label": 0}], chunk_size=0)
