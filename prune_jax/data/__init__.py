"""Data layer: whole splits (tfds ``data_source``, scikit-learn digits, MNIST-1D) loaded to
the host, on-device shuffling and preprocessing, padded evaluation batches. Imports nothing
from the core math."""

from __future__ import annotations

from prune_jax.data.pipeline import (
    crop_flip,
    epoch_indices,
    normalize,
    padded_batches,
    preprocess,
    random_crop_flip,
)
from prune_jax.data.sources import (
    DATASET_NAMES,
    DatasetInfo,
    Split,
    dataset_info,
    load,
    load_digits,
    load_mnist1d,
    split_from_source,
)

__all__ = ["DATASET_NAMES", "DatasetInfo", "Split", "crop_flip", "dataset_info",
           "epoch_indices", "load", "load_digits", "load_mnist1d", "normalize",
           "padded_batches", "preprocess", "random_crop_flip", "split_from_source"]
