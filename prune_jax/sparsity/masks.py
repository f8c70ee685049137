"""Magnitude masks, applying masks, and sparsity reports (SPEC 2.3, 3.2).

A *mask* is a pytree of booleans shaped like the parameters (True = kept; all-True on leaves
that are not prunable). Sparsity (fraction removed) and density are counted from masks, never
from zero values. Linen dicts and Flax NNX states name their leaves alike: both work.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, NamedTuple, get_args

import jax
import jax.numpy as jnp
import numpy as np

from prune_jax.ranking import remove_smallest, unit_sizes
from prune_jax.tree import Prunable, PyTree, fully_addressable, leaf_names, prunable_tree, to_host
from prune_jax.validate import (
    check_choice,
    check_finite_tree,
    check_fraction,
    check_no_explicit_mesh,
    check_tree,
    is_concrete,
)

Array = jax.Array
Scope = Literal["global", "layer", "neuron"]
SCOPES: tuple[str, ...] = get_args(Scope)

__all__ = ["MaskCount", "Scope", "SparsityReport", "apply_mask", "magnitude_mask",
           "sparsity_report"]


def check_mask(mask: PyTree, like: PyTree | None = None, name: str = "mask",
               like_name: str = "params") -> None:
    """``TypeError`` unless ``mask``'s leaves are boolean; ``ValueError`` unless they have
    ``like``'s leaf names and shapes (containers may differ: NNX ``Param`` wrappers)."""
    names = leaf_names(mask)
    if like is not None:
        if names != leaf_names(like):
            raise ValueError(f"{name} must have the same tree structure as {like_name}: leaves "
                             f"{names} vs {leaf_names(like)}")
        for leaf, a, m in zip(names, jax.tree.leaves(like), jax.tree.leaves(mask), strict=True):
            if np.shape(a) != np.shape(m):
                raise ValueError(f"{name} leaf {leaf!r} has shape {np.shape(m)}, but "
                                 f"{like_name} has {np.shape(a)}")
    for leaf, m in zip(names, jax.tree.leaves(mask), strict=True):
        if jnp.result_type(m) != jnp.bool_:
            raise TypeError(f"{name} leaf {leaf!r} must be boolean (True = kept), got "
                            f"{jnp.result_type(m)}; convert it with mask.astype(bool) or "
                            "jax.tree.map(lambda m: m > 0.5, mask)")


def where_kept(mask: PyTree, tree: PyTree) -> PyTree:
    """``tree`` with 0 where ``mask`` is False, in ``tree``'s containers."""
    leaves = [jnp.where(m, x, jnp.zeros((), jnp.result_type(x)))
              for x, m in zip(jax.tree.leaves(tree), jax.tree.leaves(mask), strict=True)]
    return jax.tree.unflatten(jax.tree.structure(tree), leaves)


# Floors of float64 counts count a value within this relative distance below an integer as
# that integer (0.29 * 100 removes 29): far above float64 rounding, far below one weight.
COUNT_RTOL = 1e-9


def floor_count(x: Any) -> np.ndarray:
    """``floor(x)`` as int64, robust to float64 rounding (``COUNT_RTOL``); NaN gives 0."""
    x = np.asarray(x, np.float64)
    out = np.floor(x + COUNT_RTOL * np.maximum(1.0, np.abs(x)))
    return np.where(np.isnan(out), 0, out).astype(np.int64)


def _placed(m: Any, x: Any) -> Any:
    """Mask leaf ``m`` (``None``: all True) as a jax array placed like a concrete weight ``x``."""
    if not (isinstance(x, jax.Array) and is_concrete(x)):
        return jnp.ones(np.shape(x), bool) if m is None else jnp.asarray(m)
    if m is None and not x.is_fully_addressable:   # other processes' devices
        return jnp.ones(x.shape, bool, device=x.sharding)
    m = np.ones(x.shape, bool) if m is None else m
    return jax.device_put(m, x.sharding) if isinstance(m, np.ndarray) else m


class PrunableLeaves(NamedTuple):
    """The prunable leaves of ``params`` (validated), their names and current masks (``live``);
    ``merge(kept)`` builds the full mask from new keep-masks of these leaves (other leaves keep
    their mask, or get all-True)."""

    names: list[str]
    leaves: list[Array]
    live: list[Array] | None
    merge: Callable[[list[Any]], PyTree]


def prunable_leaves(params: PyTree, prunable: Prunable | PyTree | None,
                    mask: PyTree | None) -> PrunableLeaves:
    """Validate ``params``/``mask``/``prunable`` once and pick out the prunable leaves."""
    check_no_explicit_mesh(params, "params")
    if mask is not None:
        check_mask(mask, params)
    flags = jax.tree.leaves(prunable_tree(params, prunable))
    weights, treedef = jax.tree.flatten(params)
    index = [i for i, f in enumerate(flags) if f]
    if not index:
        raise ValueError("prunable: no leaf of params is prunable (expected Dense/Conv kernels)")
    names = [n for n, f in zip(leaf_names(params), flags, strict=True) if f]
    named = {n: weights[i] for n, i in zip(names, index, strict=True)}
    check_tree(named, "params")
    if is_concrete(named) and not fully_addressable(named):
        check_finite_tree(named, "params")
    elif is_concrete(named):   # numpy on arrays this process can read: no compilation
        for leaf, x in named.items():
            if not np.isfinite(np.asarray(x)).all():
                raise ValueError(f"params contains NaN or Inf (leaf {leaf!r})")
    masks = None if mask is None else jax.tree.leaves(mask)

    def merge(kept: list[Any]) -> PyTree:
        out = [None] * len(weights) if masks is None else list(masks)
        for i, k in zip(index, kept, strict=True):
            out[i] = k
        return jax.tree.unflatten(treedef, [_placed(m, x) for m, x in zip(out, weights,
                                                                         strict=True)])

    return PrunableLeaves(names, [weights[i] for i in index],
                          None if masks is None else [masks[i] for i in index], merge)


def magnitude_mask(params: PyTree, sparsity: float, *, scope: Scope = "global",
                   prunable: Prunable | PyTree | None = None,
                   mask: PyTree | None = None) -> PyTree:
    """Keep-mask that removes the smallest magnitudes, ``floor(sparsity * m)`` per unit.

    In every scope unit of ``m`` prunable weights exactly ``floor(sparsity * m)`` weights with
    the smallest ``|w|`` go, ties by lower flat index (:mod:`prune_jax.ranking`); the floor
    has a 1e-9 relative tolerance, so ``0.29 * 100`` removes 29 (SPEC 2.3, 3.2).

    Args:
      params: parameter pytree (floating prunable leaves; NaN/Inf is a ValueError).
      sparsity: fraction removed per unit, in ``[0, 1)``.
      scope: ``"global"`` (one unit), ``"layer"`` (each prunable leaf) or ``"neuron"`` (each
        output unit: the LAST axis of a Flax kernel).
      prunable: which leaves may be pruned (:func:`prune_jax.tree.prunable_tree`; default
        Dense/Conv kernels).
      mask: optional current keep-mask. Its pruned weights rank below every magnitude and stay
        pruned (a unit with more than ``floor(sparsity * m)`` pruned loses no other weight).

    Returns:
      A boolean pytree like ``params`` (True = kept), placed like the weights; non-prunable
      leaves get ``mask``'s leaf, or all-True.

    Example:
      ``floor(0.35 * 10) = 3`` of the 10 kernel weights go; the bias stays all-True. Under
      ``"neuron"`` scope every column of 2 weights loses ``floor(0.5 * 2) = 1``:

      >>> params = {"Dense_0": {"kernel": jnp.arange(1.0, 11.0).reshape(2, 5),
      ...                       "bias": jnp.zeros(5)}}
      >>> mask = pj.magnitude_mask(params, 0.35)
      >>> np.asarray(mask["Dense_0"]["kernel"]).tolist()
      [[False, False, False, True, True], [True, True, True, True, True]]
      >>> int((~mask["Dense_0"]["kernel"]).sum()), bool(mask["Dense_0"]["bias"].all())
      (3, True)
      >>> mask = pj.magnitude_mask(params, 0.5, scope="neuron")
      >>> np.asarray(mask["Dense_0"]["kernel"]).tolist()
      [[False, False, False, False, False], [True, True, True, True, True]]
    """
    sparsity = check_fraction(sparsity, "sparsity")
    check_choice(scope, "scope", SCOPES)
    part = prunable_leaves(params, prunable, mask)
    k = floor_count(sparsity * unit_sizes([np.shape(x) for x in part.leaves], scope))
    removed = remove_smallest(part.leaves, k, scope=scope, live=part.live)
    return part.merge([~r for r in removed])


def apply_mask(params: PyTree, mask: PyTree) -> PyTree:
    """``params * mask`` leaf by leaf: pruned entries become exactly 0.0 (SPEC 3.2; dtypes kept).
    ``mask``: booleans shaped like ``params`` (else ``ValueError``/``TypeError``).

    Example:
      >>> params = {"kernel": jnp.array([[1.0, -2.0], [3.0, -4.0]])}
      >>> mask = {"kernel": jnp.array([[False, True], [True, False]])}
      >>> np.asarray(pj.apply_mask(params, mask)["kernel"]).tolist()
      [[0.0, -2.0], [3.0, 0.0]]
    """
    check_mask(mask, params)
    return where_kept(mask, params)


class MaskCount(NamedTuple):
    """Counts of one set of weights: ``total``, ``kept``, ``sparsity`` (removed fraction) and
    ``density`` (kept fraction). An empty set has sparsity 0 and density 1."""

    total: int
    kept: int
    sparsity: float
    density: float


def _count(total: int, kept: int) -> MaskCount:
    density = kept / total if total else 1.0
    return MaskCount(total=total, kept=kept, sparsity=1.0 - density, density=density)


class SparsityReport(NamedTuple):
    """Sparsity of a mask, counted from the mask (SPEC 3.2): ``leaves``, per leaf by
    slash-separated name; ``prunable``, over the prunable leaves; ``overall``, every leaf."""

    leaves: dict[str, MaskCount]
    prunable: MaskCount
    overall: MaskCount


def sparsity_report(mask: PyTree, prunable: Prunable | PyTree | None = None) -> SparsityReport:
    """Per-leaf and global sparsity/density of a keep-mask, counted on the host; ``prunable``
    (default :func:`prune_jax.tree.default_prunable`) selects the leaves of ``report.prunable``.

    Example:
      >>> mask = {"Dense_0": {"kernel": jnp.array([[True, False, True], [False, True, True]]),
      ...                     "bias": jnp.ones(3, bool)}}
      >>> report = pj.sparsity_report(mask)
      >>> list(report.leaves)
      ['Dense_0/bias', 'Dense_0/kernel']
      >>> report.prunable.total, report.prunable.kept, round(report.prunable.sparsity, 4)
      (6, 4, 0.3333)
      >>> report.overall.total, report.overall.kept, round(report.overall.density, 4)
      (9, 7, 0.7778)
    """
    if not jax.tree.leaves(mask):
        raise ValueError("mask has no leaves")
    check_mask(mask)
    flags = jax.tree.leaves(prunable_tree(mask, prunable))
    leaves = jax.tree.leaves(mask)
    kept = [int(np.count_nonzero(x)) for x in to_host(leaves)]
    totals = [int(np.prod(np.shape(x), dtype=np.int64)) for x in leaves]
    sel = [(t, k) for t, k, f in zip(totals, kept, flags, strict=True) if f]
    return SparsityReport(
        leaves={n: _count(t, k) for n, t, k in zip(leaf_names(mask), totals, kept, strict=True)},
        prunable=_count(sum(t for t, _ in sel), sum(k for _, k in sel)),
        overall=_count(sum(totals), sum(kept)),
    )
