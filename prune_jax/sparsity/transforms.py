"""Optax transforms for sparse training: l1 penalty, l1 proximal step, frozen pruned weights.

All three are ``optax.GradientTransformation`` objects with empty state, so they compose with
any optimizer through ``optax.chain`` (SPEC 2.4):

    tx = optax.chain(l1(5e-5), optax.sgd(0.1, momentum=0.9), keep_pruned(mask))

``l1`` goes FIRST (it edits the gradient, like weight decay in ``optax.chain(
add_decayed_weights, sgd)``); ``l1_prox`` and ``keep_pruned`` go LAST (they edit the final
step, after the optimizer has scaled it), with ``keep_pruned`` the very last.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax

from prune_jax.sparsity.masks import check_boolean, check_mask, where_kept
from prune_jax.tree import PyTree, leaf_names
from prune_jax.validate import check_positive

Array = jax.Array
MaskLike = PyTree | Callable[[PyTree], PyTree]

__all__ = ["keep_pruned", "l1", "l1_prox"]


def _need_params(params: PyTree | None, name: str) -> PyTree:
    if params is None:
        raise ValueError(f"{name} needs the parameters: call update(updates, state, params)")
    return params


def _masked(tx: optax.GradientTransformation,
            mask: MaskLike | None) -> optax.GradientTransformation:
    """``optax.masked``; a mask pytree with the params' leaf names is re-laid onto the params'
    containers (an NNX state's ``Param`` wrappers vs the pure arrays ``nnx.Optimizer`` passes).
    """
    if mask is None or callable(mask):
        return tx if mask is None else optax.masked(tx, mask)

    def relaid(params: PyTree) -> PyTree:
        if leaf_names(mask) != leaf_names(params):
            return mask   # e.g. a prefix of params: optax's own rules
        return jax.tree.unflatten(jax.tree.structure(params), jax.tree.leaves(mask))

    return optax.masked(tx, relaid)


def l1(strength: float, mask: MaskLike | None = None) -> optax.GradientTransformation:
    """Add the l1 subgradient ``strength * sign(w)`` to the updates (SPEC 2.4).

    Chained before an optimizer, ``optax.chain(l1(lam), opt)`` is ``opt`` on the loss
    ``L(w) + lam * ||w||_1`` (subgradient 0 chosen at ``w = 0``).

    Args:
      strength: ``lam >= 0``.
      mask: which leaves are penalised, as in ``optax.masked``: a pytree of bools (per leaf;
        for an NNX state, e.g. ``prune_jax.tree.prunable_tree(state)``) or a callable
        ``params -> pytree of bools``; ``None`` penalises every leaf.

    Example:
      The gradient ``g`` becomes ``g + lam * sign(w)`` (here ``lam = 0.5``, ``g = 1``):

      >>> import jax.numpy as jnp
      >>> import numpy as np
      >>> import prune_jax as pj
      >>> w = jnp.array([-2.0, 0.0, 3.0])
      >>> tx = pj.l1(0.5)
      >>> updates, _ = tx.update(jnp.ones(3), tx.init(w), w)
      >>> np.asarray(updates).tolist()
      [0.5, 1.0, 1.5]
    """
    strength = check_positive(strength, "strength", allow_zero=True)

    def update_fn(updates: PyTree, state: optax.EmptyState,
                  params: PyTree | None = None) -> tuple[PyTree, optax.EmptyState]:
        params = _need_params(params, "l1")
        return jax.tree.map(lambda u, w: u + strength * jnp.sign(w).astype(u.dtype),
                            updates, params), state

    return _masked(optax.GradientTransformation(lambda _: optax.EmptyState(), update_fn), mask)


def l1_prox(threshold: float, mask: MaskLike | None = None) -> optax.GradientTransformation:
    """Proximal l1 step (soft threshold), an alternative to :func:`l1` (SPEC 2.4, optional).

    Placed after the optimizer, it turns the step ``w -> v = w + u`` into
    ``w -> sign(v) * max(|v| - threshold, 0)``. For plain SGD with learning rate ``eta`` on
    ``L + lam ||w||_1``, use ``threshold = eta * lam``. Unlike the subgradient, it produces
    exact zeros.

    Args:
      threshold: soft-threshold ``>= 0`` applied per step.
      mask: which leaves are thresholded (as in :func:`l1`).

    Example:
      With a zero step the new weights are ``sign(w) * max(|w| - 0.5, 0)``: small weights
      become exact zeros.

      >>> import jax.numpy as jnp
      >>> import numpy as np
      >>> import optax
      >>> import prune_jax as pj
      >>> w = jnp.array([1.0, -0.25, 2.0])
      >>> tx = pj.l1_prox(0.5)
      >>> updates, _ = tx.update(jnp.zeros(3), tx.init(w), w)
      >>> np.asarray(optax.apply_updates(w, updates)).tolist()
      [0.5, 0.0, 1.5]
    """
    threshold = check_positive(threshold, "threshold", allow_zero=True)

    def update_fn(updates: PyTree, state: optax.EmptyState,
                  params: PyTree | None = None) -> tuple[PyTree, optax.EmptyState]:
        params = _need_params(params, "l1_prox")

        def step(u: Array, w: Array) -> Array:
            v = w + u
            return (jnp.sign(v) * jnp.maximum(jnp.abs(v) - threshold, 0) - w).astype(u.dtype)

        return jax.tree.map(step, updates, params), state

    return _masked(optax.GradientTransformation(lambda _: optax.EmptyState(), update_fn), mask)


def keep_pruned(mask: MaskLike) -> optax.GradientTransformation:
    """Zero the updates of pruned weights so they stay EXACTLY at their value (SPEC 3.2).

    Put it LAST in the chain: whatever comes before (momentum, Adam, weight decay, l1) may
    produce non-zero steps at pruned positions; this transform replaces them with 0.0, so a
    weight that is 0.0 (see :func:`prune_jax.sparsity.apply_mask`) stays exactly 0.0.
    Optimizer statistics (momentum, Adam moments) of pruned positions still evolve but are
    never applied.

    Args:
      mask: keep-mask pytree of bools with the structure of the updates (True = trainable), or
        a callable ``params -> mask``; a non-boolean mask is a ``TypeError``. It may be a
        traced ``jit`` argument: the transform has empty state, so the optimizer state does
        not depend on the mask, and the chain can be built inside the jitted step from the
        mask passed to it.

    Example:
      Three steps of SGD with momentum: the pruned entry stays exactly 0.0, the others move.

      >>> import jax.numpy as jnp
      >>> import numpy as np
      >>> import optax
      >>> import prune_jax as pj
      >>> keep = jnp.array([True, False, True])
      >>> w = pj.apply_mask(jnp.array([1.0, 2.0, 3.0]), keep)
      >>> tx = optax.chain(optax.sgd(0.1, momentum=0.9), pj.keep_pruned(keep))
      >>> state = tx.init(w)
      >>> for _ in range(3):
      ...     updates, state = tx.update(jnp.ones(3), state, w)
      ...     w = optax.apply_updates(w, updates)
      >>> [round(v, 4) for v in np.asarray(w).tolist()]
      [0.439, 0.0, 2.439]
      >>> float(w[1]) == 0.0
      True
    """
    if not callable(mask):
        check_boolean(mask)

    def update_fn(updates: PyTree, state: optax.EmptyState,
                  params: PyTree | None = None) -> tuple[PyTree, optax.EmptyState]:
        keep = mask(_need_params(params, "keep_pruned")) if callable(mask) else mask
        check_mask(keep, updates, "mask", "updates")
        return where_kept(keep, updates), state

    return optax.GradientTransformation(lambda _: optax.EmptyState(), update_fn)
