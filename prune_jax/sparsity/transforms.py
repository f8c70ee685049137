"""Stateless optax transforms for sparse training (SPEC 2.4): ``l1`` goes FIRST (it edits the
gradient), ``l1_prox`` and ``keep_pruned`` LAST (they edit the final step), ``keep_pruned``
the very last: ``optax.chain(l1(5e-5), optax.sgd(0.1, momentum=0.9), keep_pruned(mask))``.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax

from prune_jax.sparsity.masks import check_mask, where_kept
from prune_jax.tree import PyTree, leaf_names
from prune_jax.validate import check_positive

MaskLike = PyTree | Callable[[PyTree], PyTree]

__all__ = ["keep_pruned", "l1", "l1_prox"]


def _with_params(name: str, f: Callable[[PyTree, PyTree], PyTree]
                 ) -> optax.GradientTransformation:
    def g(updates: PyTree, params: PyTree | None) -> PyTree:
        if params is None:
            raise ValueError(f"{name} needs the parameters: call update(updates, state, params)")
        return f(updates, params)

    return optax.stateless(g)


def _masked(tx: optax.GradientTransformation,
            mask: MaskLike | None) -> optax.GradientTransformation:
    """``optax.masked``; a mask with the params' leaf names is re-laid onto the params'
    containers (an NNX state's ``Param`` wrappers vs the arrays ``nnx.Optimizer`` passes)."""
    if mask is None or callable(mask):
        return tx if mask is None else optax.masked(tx, mask)

    def relaid(params: PyTree) -> PyTree:
        if leaf_names(mask) != leaf_names(params):
            return mask   # e.g. a prefix of params: optax's own rules
        return jax.tree.unflatten(jax.tree.structure(params), jax.tree.leaves(mask))

    return optax.masked(tx, relaid)


def l1(strength: float, mask: MaskLike | None = None) -> optax.GradientTransformation:
    """Add the l1 subgradient ``strength * sign(w)`` to the updates (SPEC 2.4).

    ``optax.chain(l1(lam), opt)`` is ``opt`` on ``L(w) + lam * ||w||_1`` (0 at ``w = 0``).

    Args:
      strength: ``lam >= 0``.
      mask: which leaves are penalised, as in ``optax.masked`` (a pytree of bools, e.g.
        ``prune_jax.tree.prunable_tree(params)``, or ``params -> bools``); ``None``: all.

    Example:
      ``g = 1`` becomes ``g + lam * sign(w)``:

      >>> w = jnp.array([-2.0, 0.0, 3.0])
      >>> tx = pj.l1(0.5)
      >>> updates, _ = tx.update(jnp.ones(3), tx.init(w), w)
      >>> np.asarray(updates).tolist()
      [0.5, 1.0, 1.5]
    """
    strength = check_positive(strength, "strength", allow_zero=True)
    return _masked(_with_params("l1", lambda updates, params: jax.tree.map(
        lambda u, w: u + strength * jnp.sign(w).astype(u.dtype), updates, params)), mask)


def l1_prox(threshold: float, mask: MaskLike | None = None) -> optax.GradientTransformation:
    """Proximal l1 step (soft threshold), an alternative to :func:`l1` (SPEC 2.4, optional).

    After the optimizer, it turns the step ``w -> v = w + u`` into
    ``w -> sign(v) * max(|v| - threshold, 0)`` (exact zeros); for SGD with learning rate
    ``eta`` on ``L + lam ||w||_1``, ``threshold = eta * lam``. ``mask`` as in :func:`l1`.

    Example:
      With a zero step the new weights are ``sign(w) * max(|w| - 0.5, 0)``:

      >>> w = jnp.array([1.0, -0.25, 2.0])
      >>> tx = pj.l1_prox(0.5)
      >>> updates, _ = tx.update(jnp.zeros(3), tx.init(w), w)
      >>> np.asarray(optax.apply_updates(w, updates)).tolist()
      [0.5, 0.0, 1.5]
    """
    threshold = check_positive(threshold, "threshold", allow_zero=True)

    def step(u: jax.Array, w: jax.Array) -> jax.Array:
        v = w + u
        return (jnp.sign(v) * jnp.maximum(jnp.abs(v) - threshold, 0) - w).astype(u.dtype)

    return _masked(_with_params("l1_prox", lambda updates, params: jax.tree.map(
        step, updates, params)), mask)


def keep_pruned(mask: MaskLike) -> optax.GradientTransformation:
    """Zero the updates of pruned weights so they stay EXACTLY at their value (SPEC 3.2).

    Put it LAST in the chain: it sets the step of pruned positions to 0.0 whatever came before
    (momentum, Adam, weight decay, l1), so a weight at 0.0 (:func:`prune_jax.apply_mask`)
    stays 0.0. ``mask``: a boolean keep-mask like the updates (else ``TypeError``) or
    ``params -> mask``; it may be a traced ``jit`` argument (the state does not depend on it).

    Example:
      Three steps of SGD with momentum: the pruned entry stays exactly 0.0.

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
        check_mask(mask)

    def update(updates: PyTree, params: PyTree) -> PyTree:
        keep = mask(params) if callable(mask) else mask
        check_mask(keep, updates, "mask", "updates")
        return where_kept(keep, updates)

    return _with_params("keep_pruned", update) if callable(mask) else optax.stateless(update)
