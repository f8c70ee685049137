"""Argument validation, once at the boundary: every error names the argument (or CLI flag)
and what is accepted. No device sync on the happy path (except :func:`check_finite_tree`)."""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import AxisType, NamedSharding

from prune_jax.tree import PyTree, check_finite, check_floating

__all__ = ["check_bool", "check_choice", "check_finite_tree", "check_fraction", "check_int",
           "check_key", "check_no_explicit_mesh", "check_positive", "check_real", "check_shape",
           "check_tree", "is_concrete"]


def is_concrete(tree: PyTree) -> bool:
    """True when no leaf of ``tree`` is a tracer (so its values may be read on the host)."""
    return not any(isinstance(x, jax.core.Tracer) for x in jax.tree.leaves(tree))


def check_bool(value: Any, name: str) -> bool:
    """``value`` if it is a ``bool``, else ``TypeError`` naming ``name``."""
    if not isinstance(value, bool | np.bool_):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def check_int(value: Any, name: str, *, low: int | None = None, high: int | None = None) -> int:
    """``value`` as an ``int`` in ``[low, high]`` (either bound optional), else an error."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    value = int(value)
    if (low is not None and value < low) or (high is not None and value > high):
        bound = (f">= {low}" if high is None else f"<= {high}" if low is None
                 else f"in [{low}, {high}]")
        raise ValueError(f"{name} must be {bound}, got {value}")
    return value


def check_real(value: Any, name: str) -> float:
    """``value`` as a finite Python float, else an error naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real | np.ndarray | jax.Array):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    if np.ndim(value) != 0:
        raise TypeError(f"{name} must be a scalar, got shape {np.shape(value)}")
    out = float(value)
    if not math.isfinite(out):
        raise ValueError(f"{name} must be finite, got {out}")
    return out


def check_positive(value: Any, name: str, *, allow_zero: bool = False) -> float:
    """A finite real ``> 0`` (``>= 0`` with ``allow_zero``), else an error naming ``name``."""
    out = check_real(value, name)
    if out < 0 or (out == 0 and not allow_zero):
        raise ValueError(f"{name} must be {'>= 0' if allow_zero else '> 0'}, got {out}")
    return out


def check_fraction(value: Any, name: str, *, closed: bool = False) -> float:
    """A fraction in ``[0, 1)`` (``[0, 1]`` with ``closed``), else an error naming ``name``."""
    out = check_real(value, name)
    if not (0.0 <= out < 1.0 or (closed and out == 1.0)):
        raise ValueError(f"{name} must be in [0, {'1]' if closed else '1)'}, got {out}")
    return out


def check_choice(value: Any, name: str, choices: Iterable[Any]) -> Any:
    """``value`` if it is one of ``choices``, else ``ValueError`` listing them."""
    options = tuple(choices)
    if value not in options:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, options))}; got {value!r}")
    return value


def check_shape(array: Any, shape: tuple[int | None, ...], name: str) -> None:
    """Raise unless ``array`` has ``shape`` (``None`` matches any size)."""
    actual = np.shape(array)
    if len(actual) != len(shape) or any(s is not None and s != a
                                        for s, a in zip(shape, actual, strict=True)):
        want = "(" + ", ".join("*" if s is None else str(s) for s in shape) + ")"
        raise ValueError(f"{name} must have shape {want}, got {actual}")


def check_key(key: Any, name: str = "key") -> jax.Array:
    """One PRNG key (``jax.random.key(seed)``, or a raw ``uint32[2]`` key), else an error."""
    if not isinstance(key, jax.Array | np.ndarray):
        raise TypeError(f"{name} must be a PRNG key, e.g. jax.random.key(0); got "
                        f"{type(key).__name__}")
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        if key.shape != ():
            raise ValueError(f"{name} must be a single PRNG key, got shape {key.shape} "
                             "(split keys are passed one at a time)")
        return key
    if key.dtype != jnp.uint32 or key.shape != (2,):
        raise TypeError(f"{name} must be a PRNG key, e.g. jax.random.key(0); got dtype "
                        f"{key.dtype} and shape {key.shape}")
    return key


def check_tree(tree: PyTree, name: str) -> None:
    """A non-empty pytree of floating arrays (structure and dtypes only: no device sync)."""
    if not jax.tree.leaves(tree):
        raise ValueError(f"{name} must be a non-empty pytree of arrays")
    check_floating(tree, name)


def check_finite_tree(tree: PyTree, name: str) -> None:
    """:func:`check_tree`, then NaN/Inf raise naming the leaf (one device sync; skipped for
    tracers). For inputs where a non-finite value would silently poison an expensive result."""
    check_tree(tree, name)
    if is_concrete(tree):
        check_finite(tree, name)


def check_no_explicit_mesh(tree: PyTree, name: str) -> None:
    """One clear error if an array of ``tree`` lives on a mesh with Explicit axes: the cores
    regroup weights and let XLA place the data, which needs ``Auto`` axes."""
    shardings = [getattr(x, "sharding", None) for x in jax.tree.leaves(tree)]   # None: tracer
    if any(isinstance(s, NamedSharding) and AxisType.Explicit in s.mesh.axis_types
           for s in shardings):
        raise ValueError(
            f"{name} holds arrays on a mesh with Explicit axes (jax.make_mesh's default). "
            "prune_jax needs Auto axes: build the mesh with prune_jax.sharding.make_mesh(...) or "
            "jax.make_mesh(shape, names, axis_types=(jax.sharding.AxisType.Auto,) * len(names)), "
            "or call it inside jax.sharding.auto_axes")
