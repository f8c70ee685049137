"""Pytree helpers shared by every part of prune_jax: flatten, measure, name, validate.

A *prunable* leaf is one whose entries global/layer/neuron pruning may remove (SPEC.md,
preamble): by default the ``kernel`` leaves of Flax ``Dense``/``Conv`` layers; biases and
normalisation parameters are never prunable.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

PyTree = Any
Array = jax.Array
Prunable = Callable[[str, Array], bool]

__all__ = ["Array", "PyTree", "check_finite", "check_same_structure", "combine", "default_prunable",
           "fully_addressable", "leaf_names", "partition", "prunable_leaves", "prunable_tree",
           "ravel", "replicated_sharding", "to_host", "tree_add_scaled", "tree_dot", "tree_norm",
           "tree_random_like", "tree_size", "tree_zeros_like"]


def ravel(tree: PyTree) -> tuple[Array, Callable[[Array], PyTree]]:
    """``(vector, unravel)``: ``tree`` flattened (:func:`jax.flatten_util.ravel_pytree`)."""
    return ravel_pytree(tree)


def tree_size(tree: PyTree) -> int:
    """Total number of scalar entries in ``tree`` (the dimension ``D`` of SPEC.md)."""
    return int(sum(np.prod(np.shape(x), dtype=np.int64) for x in jax.tree.leaves(tree)))


def tree_dot(a: PyTree, b: PyTree) -> Array:
    """Euclidean inner product ``<a, b>`` of two pytrees with the same structure."""
    parts = jax.tree.leaves(jax.tree.map(jnp.vdot, a, b))
    return sum(parts[1:], parts[0]) if parts else jnp.zeros(())


def tree_norm(a: PyTree) -> Array:
    """Euclidean (l2) norm of a pytree taken as one flat vector."""
    return jnp.sqrt(tree_dot(a, a))


def tree_add_scaled(a: PyTree, scale: Array | float, b: PyTree) -> PyTree:
    """Return ``a + scale * b`` leaf by leaf (the BLAS ``axpy``), keeping ``a``'s dtypes."""
    return jax.tree.map(lambda x, y: (x + scale * y).astype(x.dtype), a, b)


def tree_zeros_like(a: PyTree) -> PyTree:
    """A pytree of zeros with the structure, shapes and dtypes of ``a``."""
    return jax.tree.map(jnp.zeros_like, a)


def tree_random_like(key: Array, like: PyTree, kind: str = "rademacher") -> PyTree:
    """Random pytree like ``like`` (shapes, dtypes): ``"rademacher"`` (+-1) or ``"normal"``."""
    if kind not in ("rademacher", "normal"):
        raise ValueError(f"kind must be 'rademacher' or 'normal', got {kind!r}")
    draw = jax.random.rademacher if kind == "rademacher" else jax.random.normal
    leaves, treedef = jax.tree.flatten(like)
    keys = jax.random.split(key, max(len(leaves), 1))
    return jax.tree.unflatten(treedef, [draw(k, jnp.shape(x), dtype=jnp.result_type(x))
                                        for k, x in zip(keys, leaves, strict=False)])


def _path_name(path: tuple[Any, ...]) -> str:
    # the trailing ``.value`` of a Flax NNX variable is dropped: NNX and linen names agree
    if path and isinstance(path[-1], jax.tree_util.GetAttrKey) and path[-1].name == "value":
        path = path[:-1]
    return "/".join(str(next((getattr(p, a) for a in ("key", "name", "idx") if hasattr(p, a)),
                             p)) for p in path)


def leaf_names(tree: PyTree) -> list[str]:
    """Slash-separated names (``"Dense_0/kernel"``) of the leaves of ``tree`` in
    ``jax.tree.leaves`` order; an NNX variable's trailing ``value`` is dropped."""
    return [_path_name(p) for p, _ in jax.tree_util.tree_flatten_with_path(tree)[0]]


def default_prunable(name: str, leaf: Array) -> bool:
    """Default prunable rule (SPEC 2.4, 3.2): kernels of Dense/Conv layers (``.../kernel``)."""
    return name.split("/")[-1] == "kernel" and jnp.ndim(leaf) >= 2


def prunable_tree(params: PyTree, prunable: Prunable | PyTree | None = None) -> PyTree:
    """One Python bool per leaf of ``params``: may it be pruned? ``prunable``: ``None``
    (:func:`default_prunable`), a predicate ``(name, leaf) -> bool`` on slash-separated leaf
    names, or a pytree of bools like ``params``."""
    prunable = default_prunable if prunable is None else prunable
    if callable(prunable):
        flat, treedef = jax.tree_util.tree_flatten_with_path(params)
        return jax.tree.unflatten(treedef, [bool(prunable(_path_name(p), x)) for p, x in flat])
    check_same_structure(params, prunable, "params", "prunable", shapes=False)
    return jax.tree.map(bool, prunable)


def prunable_leaves(params: PyTree, prunable: Prunable | PyTree | None = None) -> list[Array]:
    """The prunable leaves of ``params`` (in ``jax.tree.leaves`` order)."""
    flags = jax.tree.leaves(prunable_tree(params, prunable))
    chosen = [x for x, f in zip(jax.tree.leaves(params), flags, strict=True) if f]
    if not chosen:
        raise ValueError("prunable: no leaf of params is prunable (expected Dense/Conv 'kernel's)")
    return chosen


def partition(tree: PyTree, flags: PyTree) -> tuple[PyTree, PyTree]:
    """Split ``tree`` by a bool pytree into ``(selected, rest)``; missing leaves are ``None``.

    ``combine(selected, rest)`` rebuilds ``tree``: differentiate with respect to a subset of
    the parameters (e.g. the prunable kernels, SPEC 2.3) without copying the rest.
    """
    check_same_structure(tree, flags, "tree", "flags", shapes=False)
    return (jax.tree.map(lambda x, f: x if f else None, tree, flags),
            jax.tree.map(lambda x, f: None if f else x, tree, flags))


def combine(selected: PyTree, rest: PyTree) -> PyTree:
    """Inverse of :func:`partition`: take each leaf from whichever side is not ``None``."""
    return jax.tree.map(lambda a, b: b if a is None else a, selected, rest,
                        is_leaf=lambda x: x is None)


def check_same_structure(a: PyTree, b: PyTree, name_a: str, name_b: str,
                         *, shapes: bool = True) -> None:
    """``ValueError`` naming both arguments unless ``a`` and ``b`` have the same tree structure
    (and, with ``shapes=True``, leaf shapes)."""
    sa, sb = jax.tree.structure(a), jax.tree.structure(b)
    if sa != sb:
        raise ValueError(f"{name_b} must have the same tree structure as {name_a}; "
                         f"got {sb} and {sa}")
    if not shapes:
        return
    for na, xa, xb in zip(leaf_names(a), jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        if jnp.shape(xa) != jnp.shape(xb):
            raise ValueError(f"{name_b} leaf {na!r} has shape {jnp.shape(xb)}, "
                             f"but {name_a} has {jnp.shape(xa)}")


def check_floating(tree: PyTree, name: str) -> None:
    """``TypeError`` naming ``name`` unless every leaf has a floating dtype."""
    for n, x in zip(leaf_names(tree), jax.tree.leaves(tree), strict=True):
        if not jnp.issubdtype(jnp.result_type(x), jnp.floating):
            raise TypeError(f"{name} leaf {n!r} must be floating point, got {jnp.result_type(x)}")


def check_finite(tree: PyTree, name: str) -> None:
    """``ValueError`` naming ``name`` (and the first bad leaf) if any leaf holds NaN/Inf.

    Outside ``jit``: one compiled pass, one sync for replicated per-leaf flags, so every
    process of a multi-host run raises the same error.
    """
    named = [(n, x) for n, x in zip(leaf_names(tree), jax.tree.leaves(tree), strict=True)
             if jnp.issubdtype(jnp.result_type(x), jnp.inexact)]
    leaves = [x for _, x in named]
    if len({frozenset(x.sharding.device_set) for x in _concrete_arrays(leaves)
            if x.committed}) > 1:   # committed to different devices: one jit cannot take all
        flags = [_finite_flags([x], replicated_sharding(x)).item() for x in leaves]
    else:
        flags = np.asarray(_finite_flags(leaves, replicated_sharding(leaves))) if leaves else []
    for (leaf, _), ok in zip(named, flags, strict=True):
        if not ok:
            raise ValueError(f"{name} contains NaN or Inf" + (f" (leaf {leaf!r})" if leaf else ""))


@jax.jit(static_argnames="sharding")
def _finite_flags(leaves: list[Array], sharding: NamedSharding | None) -> Array:
    flags = jnp.stack([jnp.all(jnp.isfinite(x)) for x in leaves])
    return flags if sharding is None else constrain(flags, sharding)


def constrain(x: Array, sharding: NamedSharding) -> Array:
    """:func:`jax.lax.with_sharding_constraint` (meshes with Auto axes; arrays on a mesh with
    Explicit axes are rejected at the public boundary, ``prune_jax.validate``)."""
    return jax.lax.with_sharding_constraint(x, sharding)


def _concrete_arrays(tree: PyTree) -> list[Array]:
    return [x for x in jax.tree.leaves(tree)
            if isinstance(x, jax.Array) and not isinstance(x, jax.core.Tracer)]


def fully_addressable(tree: PyTree) -> bool:
    """True when this process can read every leaf of ``tree`` (``np.asarray`` works on it):
    no leaf is a :class:`jax.Array` spanning other processes' devices unreplicated."""
    return all(x.is_fully_addressable or x.is_fully_replicated for x in _concrete_arrays(tree))


def replicated_sharding(tree: PyTree) -> NamedSharding | None:
    """``NamedSharding(mesh, P())`` on the mesh of ``tree``'s multi-process leaves (constrain a
    small jitted result to it and every process can fetch it), or ``None`` if there are none
    on a ``NamedSharding`` mesh."""
    for x in _concrete_arrays(tree):
        if not x.is_fully_addressable and isinstance(x.sharding, NamedSharding):
            return NamedSharding(x.sharding.mesh, P())
    return None


def to_host(tree: PyTree) -> PyTree:
    """:func:`jax.device_get` that first replicates multi-process leaves under ``jit`` (an
    all-gather: every process must call it). For small results, not parameters."""
    def one(x: Any) -> Any:
        if fully_addressable(x):
            return x
        if (sharding := replicated_sharding(x)) is None:
            raise ValueError("cannot fetch a multi-process array that is not on a "
                             "NamedSharding mesh; reshard it first")
        return _replicate(x, sharding)

    return jax.device_get(jax.tree.map(one, tree))


_replicate = jax.jit(constrain, static_argnums=1)
