"""Private host-side validation and shape specs shared by the curvature modules.

Validation runs on the host in the public wrappers, outside the compiled cores. Checks that
need values (finiteness, non-zero norms) are skipped when the arguments are tracers, so that
the public functions stay usable under ``jax.vmap``/``jax.jit`` of the caller.
"""

from __future__ import annotations

import dataclasses
import numbers
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.tree_util import Partial

from prune_jax.tree import (
    Array,
    PyTree,
    check_finite,
    check_floating,
    check_same_structure,
    ravel,
    tree_size,
)

Matvec = Callable[[PyTree], PyTree]


def is_concrete(tree: PyTree) -> bool:
    """True when no leaf of ``tree`` is a tracer (so values may be inspected on the host)."""
    return not any(isinstance(x, jax.core.Tracer) for x in jax.tree.leaves(tree))


def check_int(value: Any, name: str, *, low: int, high: int | None = None) -> int:
    """Return ``value`` as ``int`` or raise naming ``name`` (``low <= value <= high``)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    value = int(value)
    if value < low or (high is not None and value > high):
        bound = f"[{low}, {high}]" if high is not None else f">= {low}"
        raise ValueError(f"{name} must be in {bound}, got {value}")
    return value


def check_key(key: Any, name: str = "key") -> Array:
    """Raise ``TypeError`` naming ``name`` unless ``key`` is one PRNG key (typed or raw)."""
    if not isinstance(key, jax.Array | np.ndarray):
        raise TypeError(f"{name} must be a jax.random key, got {type(key).__name__}")
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        if key.shape != ():
            raise ValueError(f"{name} must be a single PRNG key, got shape {key.shape}")
        return key
    if key.dtype != jnp.uint32 or key.shape != (2,):
        raise TypeError(f"{name} must be a jax.random key (jax.random.key(seed)), "
                        f"got dtype {key.dtype} and shape {key.shape}")
    return key


def check_tree(tree: PyTree, name: str) -> None:
    """A non-empty floating pytree; finite when concrete."""
    if not jax.tree.leaves(tree):
        raise ValueError(f"{name} must be a non-empty pytree of arrays")
    check_floating(tree, name)
    if is_concrete(tree) and not _all_shape_structs(tree) and not bool(_all_finite(tree)):
        check_finite(tree, name)  # raises, naming the offending leaf


@jax.jit
def _all_finite(tree: PyTree) -> Array:
    """One compiled reduction over all leaves (one host sync for the whole tree)."""
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)]))


def _all_shape_structs(tree: PyTree) -> bool:
    return all(isinstance(x, jax.ShapeDtypeStruct) for x in jax.tree.leaves(tree))


def as_operator(matvec: Any, name: str = "matvec") -> Partial:
    """Return ``matvec`` as a :class:`jax.tree_util.Partial` (a pytree; its arrays are leaves).

    A plain callable becomes ``Partial(matvec)`` with no leaves: arrays it closes over are
    compiled in as constants, so prefer the operators of :mod:`prune_jax.curvature.hvp`.
    """
    if isinstance(matvec, Partial):
        return matvec
    if not callable(matvec):
        raise TypeError(f"{name} must be callable (v -> H v), got {type(matvec).__name__}")
    return Partial(matvec)


def check_operator_output(matvec: Partial, like: PyTree, name: str = "matvec",
                          like_name: str = "like") -> None:
    """Trace ``matvec`` abstractly on ``like`` and check that it returns a pytree like ``like``."""
    spec = jax.eval_shape(lambda t: t, like)
    try:
        out = jax.eval_shape(matvec, spec)
    except Exception as err:  # re-raised with the argument named
        hint = ""
        if "mesh" in str(err) and ("Explicit" in str(err) or "context mesh" in str(err)):
            hint = (" (if it closes over arrays on a mesh with Explicit axes, pass them as "
                    "arguments, jax.tree_util.Partial(f, *arrays), or use "
                    "prune_jax.hvp_operator, so that the toolkit can run it on the mesh's Auto "
                    "twin)")
        raise ValueError(f"{name} could not be applied to a pytree shaped like {like_name}: "
                         f"{err}{hint}") from err
    check_same_structure(spec, out, like_name, f"{name}({like_name})")
    check_floating(out, f"{name}({like_name})")


def check_finite_result(values: PyTree, what: str) -> None:
    """Post-loop host check: raise ``ValueError`` if ``values`` hold NaN/Inf (skipped if traced)."""
    if not is_concrete(values):
        return
    for x in jax.tree.leaves(values):
        if x is not None and not bool(np.all(np.isfinite(np.asarray(x)))):
            raise ValueError(f"{what} produced NaN or Inf; check the loss, the parameters and "
                             "the batches (the HVP / matvec is not finite)")


@dataclasses.dataclass(frozen=True)
class LikeSpec:
    """Hashable description of a parameter-shaped pytree (a static jit argument)."""

    treedef: Any
    shapes: tuple[tuple[int, ...], ...]
    dtypes: tuple[Any, ...]

    @classmethod
    def of(cls, like: PyTree, name: str = "like") -> LikeSpec:
        """Spec of ``like`` (arrays or ``jax.ShapeDtypeStruct`` leaves), validated."""
        check_tree(like, name)
        spec = jax.eval_shape(lambda t: t, like)
        leaves, treedef = jax.tree.flatten(spec)
        return cls(treedef, tuple(tuple(x.shape) for x in leaves),
                   tuple(np.dtype(x.dtype) for x in leaves))

    @property
    def size(self) -> int:
        """Number of scalar entries ``D``."""
        return tree_size(self.zeros_struct())

    @property
    def dtype(self) -> Any:
        """dtype of the flattened vector (``ravel`` promotes mixed leaves)."""
        return jnp.result_type(*self.dtypes)

    def zeros_struct(self) -> PyTree:
        """Pytree of ``ShapeDtypeStruct`` leaves."""
        leaves = [jax.ShapeDtypeStruct(s, d) for s, d in zip(self.shapes, self.dtypes,
                                                             strict=True)]
        return jax.tree.unflatten(self.treedef, leaves)

    def unravel(self) -> Callable[[Array], PyTree]:
        """The inverse of ``ravel`` for this structure (usable inside ``jit``)."""
        zeros = [jnp.zeros(s, d) for s, d in zip(self.shapes, self.dtypes, strict=True)]
        return ravel(jax.tree.unflatten(self.treedef, zeros))[1]


def flat_operator(matvec: Partial, unravel: Callable[[Array], PyTree],
                  dtype: Any) -> Callable[[Array], Array]:
    """Flat view ``x -> ravel(matvec(unravel(x)))`` of a pytree operator, in ``dtype``."""

    def op(x: Array) -> Array:
        return ravel(matvec(unravel(x)))[0].astype(dtype)

    return op


def map_chunked(f: Callable[[Array], Any], xs: Array, batch_size: int, *,
                sequential: bool = False) -> Any:
    """``vmap`` of ``f`` over ``xs``, chunked with ``lax.map`` when ``batch_size < len(xs)``.

    ``sequential=True`` or ``batch_size == 1``: a plain ``lax.map``, one element at a time and
    no ``vmap`` at all (host-offloaded Lanczos bases need that, and a ``lax.cond`` or
    ``while_loop`` inside ``f`` then keeps an unbatched predicate).
    """
    if sequential or batch_size == 1:
        return jax.lax.map(f, xs)
    if batch_size >= xs.shape[0]:
        return jax.vmap(f)(xs)
    return jax.lax.map(f, xs, batch_size=batch_size)
