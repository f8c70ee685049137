"""Private host-side argument validation for :mod:`prune_jax.slth` (errors name the argument)."""

from __future__ import annotations

import numbers
from typing import Any

import jax
import numpy as np


def is_concrete(*arrays: Any) -> bool:
    """True when no argument is a tracer, so that values may be inspected on the host."""
    return not any(isinstance(a, jax.core.Tracer) for a in jax.tree.leaves(arrays))


def check_int(value: Any, name: str, *, low: int, high: int | None = None) -> int:
    """Return ``value`` as ``int`` or raise a ``ValueError`` naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    value = int(value)
    if value < low or (high is not None and value > high):
        bound = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise ValueError(f"{name} must be {bound}, got {value}")
    return value


def check_open_unit(value: Any, name: str) -> float:
    """Return ``value`` as ``float`` or raise unless it lies in the open interval (0, 1)."""
    value = float(value)
    if not 0.0 < value < 1.0:
        raise ValueError(f"{name} must lie in (0, 1), got {value}")
    return value


def check_positive(value: Any, name: str) -> float:
    """Return ``value`` as ``float`` or raise unless it is finite and > 0."""
    value = float(value)
    if not (np.isfinite(value) and value > 0.0):
        raise ValueError(f"{name} must be finite and > 0, got {value}")
    return value


def check_shape(array: Any, shape: tuple[int | None, ...], name: str) -> None:
    """Raise unless ``array`` has ``shape`` (``None`` matches any size)."""
    actual = np.shape(array)
    ok = len(actual) == len(shape) and all(s is None or s == a for s, a in zip(shape, actual,
                                                                              strict=True))
    if not ok:
        want = "(" + ", ".join("*" if s is None else str(s) for s in shape) + ")"
        raise ValueError(f"{name} must have shape {want}, got {actual}")
