"""Pytree helpers shared by every part of prune_jax.

Everything here is a small pure function over pytrees. The rest of the package speaks in
pytrees (parameters, masks, probe vectors); this module is the only place that knows how to
flatten them, measure them, name their leaves and validate them.

Vocabulary (SPEC.md, preamble): a *prunable* leaf is one whose entries global/layer/neuron
pruning may remove. By default these are the ``kernel`` leaves of Flax ``Dense``/``Conv``
layers; biases and normalisation parameters are never prunable.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

PyTree = Any
Array = jax.Array
KeyPath = tuple[Any, ...]
Prunable = Callable[[str, Array], bool]

__all__ = [
    "Array",
    "PyTree",
    "check_finite",
    "check_same_structure",
    "combine",
    "default_prunable",
    "fully_addressable",
    "leaf_names",
    "partition",
    "prunable_leaves",
    "prunable_tree",
    "ravel",
    "replicated_sharding",
    "to_host",
    "tree_add_scaled",
    "tree_dot",
    "tree_norm",
    "tree_random_like",
    "tree_size",
    "tree_zeros_like",
]


# --------------------------------------------------------------------------- flattening

def ravel(tree: PyTree) -> tuple[Array, Callable[[Array], PyTree]]:
    """Flatten ``tree`` into one vector; return it and the inverse map.

    Thin wrapper over :func:`jax.flatten_util.ravel_pytree` (dtype promotion included), kept so
    that the rest of the package has one import for it.
    """
    return ravel_pytree(tree)


def tree_size(tree: PyTree) -> int:
    """Total number of scalar entries in ``tree`` (the dimension ``D`` of SPEC.md)."""
    return int(sum(np.prod(np.shape(x), dtype=np.int64) for x in jax.tree.leaves(tree)))


# --------------------------------------------------------------------------- algebra

def tree_dot(a: PyTree, b: PyTree) -> Array:
    """Euclidean inner product ``<a, b>`` of two pytrees with the same structure."""
    parts = jax.tree.leaves(jax.tree.map(lambda x, y: jnp.vdot(x, y), a, b))
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
    """Random pytree shaped like ``like``: ``"rademacher"`` (+-1) or ``"normal"`` entries.

    One independent key per leaf is split from ``key``; dtypes follow ``like``.
    """
    if kind not in ("rademacher", "normal"):
        raise ValueError(f"kind must be 'rademacher' or 'normal', got {kind!r}")
    leaves, treedef = jax.tree.flatten(like)
    keys = jax.random.split(key, max(len(leaves), 1))
    out = []
    for k, leaf in zip(keys, leaves, strict=False):
        shape, dtype = jnp.shape(leaf), jnp.result_type(leaf)
        if kind == "rademacher":
            out.append(jax.random.rademacher(k, shape, dtype=dtype))
        else:
            out.append(jax.random.normal(k, shape, dtype=dtype))
    return jax.tree.unflatten(treedef, out)


# --------------------------------------------------------------------------- naming

def _key_name(entry: Any) -> str:
    for attr in ("key", "name", "idx"):
        if hasattr(entry, attr):
            return str(getattr(entry, attr))
    return str(entry)


def path_name(path: KeyPath) -> str:
    """Render a JAX key path as ``"Dense_0/kernel"`` (slash-separated, no brackets).

    The trailing ``.value`` attribute of a Flax NNX variable (``nnx.State`` leaves are
    ``Param(value=...)``) is dropped, so NNX and linen parameters get the same names.
    """
    if path and isinstance(path[-1], jax.tree_util.GetAttrKey) and path[-1].name == "value":
        path = path[:-1]
    return "/".join(_key_name(p) for p in path)


def leaf_names(tree: PyTree) -> list[str]:
    """Slash-separated names of the leaves of ``tree`` in ``jax.tree.leaves`` order."""
    return [path_name(p) for p, _ in jax.tree_util.tree_flatten_with_path(tree)[0]]


# --------------------------------------------------------------------------- prunable leaves

def default_prunable(name: str, leaf: Array) -> bool:
    """Default prunable rule (SPEC 2.4, 3.2): kernels of Dense/Conv layers (``.../kernel``).

    Biases, BatchNorm/LayerNorm ``scale``/``bias`` and running statistics are never prunable.
    """
    return name.split("/")[-1] == "kernel" and jnp.ndim(leaf) >= 2


def prunable_tree(params: PyTree, prunable: Prunable | PyTree | None = None) -> PyTree:
    """Boolean pytree (one Python bool per leaf) saying which leaves may be pruned.

    ``prunable`` is ``None`` (use :func:`default_prunable`), a predicate
    ``(name, leaf) -> bool`` on slash-separated leaf names, or a pytree of bools with the
    structure of ``params``.
    """
    if prunable is None:
        prunable = default_prunable
    if callable(prunable):
        flat, treedef = jax.tree_util.tree_flatten_with_path(params)
        return jax.tree.unflatten(treedef, [bool(prunable(path_name(p), x)) for p, x in flat])
    check_same_structure(params, prunable, "params", "prunable", shapes=False)
    return jax.tree.map(bool, prunable)


def prunable_leaves(params: PyTree, prunable: Prunable | PyTree | None = None) -> list[Array]:
    """The prunable leaves of ``params`` (in ``jax.tree.leaves`` order)."""
    flags = jax.tree.leaves(prunable_tree(params, prunable))
    leaves = jax.tree.leaves(params)
    chosen = [x for x, f in zip(leaves, flags, strict=True) if f]
    if not chosen:
        raise ValueError("prunable: no leaf of params is prunable (expected Dense/Conv 'kernel's)")
    return chosen


# --------------------------------------------------------------------------- validation

def check_same_structure(a: PyTree, b: PyTree, name_a: str, name_b: str,
                         *, shapes: bool = True) -> None:
    """Raise ``ValueError`` naming both arguments unless ``a`` and ``b`` match.

    Checks the tree structure and, with ``shapes=True``, every leaf shape.
    """
    sa, sb = jax.tree.structure(a), jax.tree.structure(b)
    if sa != sb:
        raise ValueError(f"{name_b} must have the same tree structure as {name_a}; "
                         f"got {sb} and {sa}")
    if shapes:
        for na, xa, xb in zip(leaf_names(a), jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
            if jnp.shape(xa) != jnp.shape(xb):
                raise ValueError(f"{name_b} leaf {na!r} has shape {jnp.shape(xb)}, "
                                 f"but {name_a} has {jnp.shape(xa)}")


def check_finite(tree: PyTree, name: str) -> None:
    """Raise ``ValueError`` naming ``name`` (and the first bad leaf) if any leaf holds NaN/Inf.

    Host-side check, for use outside ``jit``. The reduction runs under ``jit``: one compiled
    program computes an all-finite flag per floating leaf, and only that small, fully
    replicated vector comes to the host (one sync for the whole tree). So it also works for
    arrays that are not fully addressable (multi-host, ``jax.distributed``): every process
    gets the same flags and raises the same error.
    """
    names, leaves = leaf_names(tree), jax.tree.leaves(tree)
    checked = [i for i, x in enumerate(leaves)
               if jnp.issubdtype(jnp.result_type(x), jnp.inexact)]
    if not checked:
        return
    flags = _finite_flags([leaves[i] for i in checked])
    bad = np.flatnonzero(~flags)
    if bad.size:
        leaf = names[checked[bad[0]]]
        raise ValueError(f"{name} contains NaN or Inf" + (f" (leaf {leaf!r})" if leaf else ""))


@jax.jit(static_argnames="sharding")
def _finite_flags_jit(leaves: list[Array], sharding: NamedSharding | None) -> Array:
    flags = jnp.stack([jnp.all(jnp.isfinite(x)) for x in leaves])
    return flags if sharding is None else constrain(flags, sharding)


def _finite_flags(leaves: list[Any]) -> np.ndarray:
    """``(len(leaves),)`` host bools: is every entry of leaf ``i`` finite (one compiled pass)."""
    devices = {frozenset(x.sharding.device_set) for x in _concrete_arrays(leaves)
               if x.committed}
    if len(devices) > 1:  # committed to different devices: one jit cannot take them all
        return np.array([bool(_finite_flags_jit([x], replicated_sharding(x)).item())
                         for x in leaves])
    return np.asarray(_finite_flags_jit(leaves, replicated_sharding(leaves)), dtype=bool)


def check_floating(tree: PyTree, name: str) -> None:
    """Raise ``TypeError`` naming ``name`` unless every leaf has a floating dtype."""
    for n, x in zip(leaf_names(tree), jax.tree.leaves(tree), strict=True):
        if not jnp.issubdtype(jnp.result_type(x), jnp.floating):
            raise TypeError(f"{name} leaf {n!r} must be floating point, got {jnp.result_type(x)}")


def stack_trees(trees: Sequence[PyTree]) -> PyTree:
    """Stack a sequence of same-structured pytrees along a new leading axis."""
    return jax.tree.map(lambda *xs: jnp.stack(xs), *trees)


def partition(tree: PyTree, flags: PyTree) -> tuple[PyTree, PyTree]:
    """Split ``tree`` by a bool pytree into ``(selected, rest)``; missing leaves are ``None``.

    ``combine(selected, rest)`` rebuilds ``tree``. Use it to differentiate with respect to a
    subset of the parameters (e.g. the prunable kernels, SPEC 2.3) without copying the rest.
    """
    check_same_structure(tree, flags, "tree", "flags", shapes=False)
    selected = jax.tree.map(lambda x, f: x if f else None, tree, flags)
    rest = jax.tree.map(lambda x, f: None if f else x, tree, flags)
    return selected, rest


def combine(selected: PyTree, rest: PyTree) -> PyTree:
    """Inverse of :func:`partition`: take each leaf from whichever side is not ``None``."""
    return jax.tree.map(lambda a, b: b if a is None else a, selected, rest,
                        is_leaf=lambda x: x is None)


def constrain(x: Array, sharding: NamedSharding) -> Array:
    """:func:`jax.lax.with_sharding_constraint` (meshes with Auto axes; arrays on a mesh with
    Explicit axes are rejected at the public boundary, ``prune_jax.validate``)."""
    return jax.lax.with_sharding_constraint(x, sharding)


# --------------------------------------------------------------------------- multi-host arrays

def _concrete_arrays(tree: PyTree) -> list[Array]:
    """The leaves of ``tree`` that are concrete :class:`jax.Array` objects (not tracers)."""
    return [x for x in jax.tree.leaves(tree)
            if isinstance(x, jax.Array) and not isinstance(x, jax.core.Tracer)]


def fully_addressable(tree: PyTree) -> bool:
    """True when this process can read every leaf of ``tree`` (``np.asarray`` works on it).

    False when some leaf is a :class:`jax.Array` that is not fully addressable (it spans
    devices of other processes, after :func:`jax.distributed.initialize`) and not fully
    replicated either. Non-JAX leaves (numpy arrays, Python scalars) are addressable.
    """
    return all(x.is_fully_addressable or x.is_fully_replicated for x in _concrete_arrays(tree))


def replicated_sharding(tree: PyTree) -> NamedSharding | None:
    """``NamedSharding(mesh, P())`` on the mesh of ``tree``'s multi-process leaves, or ``None``.

    For results that the host must read: a jitted reduction over arrays that are not fully
    addressable can constrain its (small) output to this sharding, which every process can
    fetch. ``None`` when every leaf is fully addressable (one process: nothing to do), or
    when the multi-process leaves are not on a :class:`~jax.sharding.NamedSharding` mesh (XLA's
    propagation then decides; full reductions come out replicated anyway).
    """
    for x in _concrete_arrays(tree):
        if not x.is_fully_addressable:
            sharding = x.sharding
            if isinstance(sharding, NamedSharding):
                return NamedSharding(sharding.mesh, P())
    return None


@jax.jit(static_argnames="sharding")
def _replicate_jit(x: Array, sharding: NamedSharding) -> Array:
    return constrain(x, sharding)


def to_host(tree: PyTree) -> PyTree:
    """:func:`jax.device_get` that also works for multi-process (not fully addressable) leaves.

    Leaves that this process cannot read are first replicated under ``jit`` (an all-gather
    compiled by XLA; every process must call this, as for any multi-process computation),
    then fetched. Meant for small results (per-unit statistics, counts), not for parameters.
    """
    def one(x: Any) -> Any:
        if _concrete_arrays(x) and not fully_addressable(x):
            sharding = replicated_sharding(x)
            if sharding is None:
                raise ValueError("cannot fetch a multi-process array that is not on a "
                                 "NamedSharding mesh; reshard it first")
            x = _replicate_jit(x, sharding)
        return x

    return jax.device_get(jax.tree.map(one, tree))
