"""Supervised training of Flax classifiers with optax, compiled one epoch at a time.

One epoch is one jitted ``lax.scan`` over mini-batches drawn on the device, so the host syncs
once per epoch (progress, and an orbax checkpoint every ``checkpoint_every`` epochs). Epoch
``e`` uses the key ``fold_in(key, e)``, so a killed and resumed run reproduces the uninterrupted
one exactly. The optimizer is built inside the compiled epoch from the current pruning mask,
so masks are jit arguments and iterative pruning compiles once for every mask.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from prune_jax import data as D
from prune_jax.experiments import checkpoint as ckpt
from prune_jax.experiments.progress import progress_bar
from prune_jax.sparsity.transforms import keep_pruned, l1
from prune_jax.tree import PyTree

__all__ = ["EvalResult", "OptimizerConfig", "TrainResult", "TrainState", "TrainingDiverged",
           "evaluate", "loss_and_updates", "make_optimizer", "train"]


class TrainingDiverged(RuntimeError):
    """The training loss became NaN or infinite (raised at the end of that epoch)."""


class TrainState(NamedTuple):
    """Everything that changes during training (a pytree, checkpointed as a whole)."""

    params: PyTree
    batch_stats: PyTree
    opt_state: optax.OptState
    epoch: jax.Array


class EvalResult(NamedTuple):
    """Size-weighted mean loss and accuracy over a data set (padding excluded)."""

    loss: jax.Array
    accuracy: jax.Array


class TrainResult(NamedTuple):
    """Final state and per-epoch history (``train_loss``, ``train_accuracy`` lists)."""

    state: TrainState
    history: dict[str, list[float]]


@dataclasses.dataclass(frozen=True)
class OptimizerConfig:
    """SGD-with-momentum recipe (SPEC 2.4: momentum 0.9, weight decay 0). ``l1`` is the
    strength of :func:`prune_jax.l1` on the prunable kernels; ``schedule`` is ``"constant"`` or
    ``"cosine"`` (decay over the whole run)."""

    learning_rate: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 0.0
    l1: float = 0.0
    schedule: str = "cosine"
    clip_norm: float | None = None


def make_optimizer(cfg: OptimizerConfig, total_steps: int,
                   prunable: PyTree | None = None) -> Callable[[PyTree | None], Any]:
    """Return ``mask -> optax.GradientTransformation`` for ``cfg``.

    Chain: ``[clip] -> l1 -> weight decay -> sgd(momentum) -> keep_pruned(mask)``, so the l1
    subgradient enters the momentum like any gradient term and pruned weights get zero updates.
    """
    if cfg.schedule == "cosine":
        lr: Any = optax.cosine_decay_schedule(cfg.learning_rate, max(total_steps, 1))
    elif cfg.schedule == "constant":
        lr = cfg.learning_rate
    else:
        raise ValueError(f"schedule must be 'cosine' or 'constant', got {cfg.schedule!r}")

    def build(mask: PyTree | None) -> optax.GradientTransformation:
        parts = []
        if cfg.clip_norm is not None:
            parts.append(optax.clip_by_global_norm(cfg.clip_norm))
        if cfg.l1 > 0:
            parts.append(l1(cfg.l1, mask=prunable))
        if cfg.weight_decay > 0:
            parts.append(optax.add_decayed_weights(cfg.weight_decay))
        parts.append(optax.sgd(lr, momentum=cfg.momentum or None))
        if mask is not None:
            parts.append(keep_pruned(mask))
        return optax.chain(*parts)

    return build


def loss_and_updates(model: nn.Module, params: PyTree, batch_stats: PyTree, x: jax.Array,
                     y: jax.Array, w: jax.Array | None = None, *, train: bool = False
                     ) -> tuple[jax.Array, tuple[PyTree, jax.Array]]:
    """Weighted mean softmax cross-entropy; returns ``(loss, (new_batch_stats, logits))``.

    ``w``: per-example weights (1 real, 0 padding); ``train``: BatchNorm's mode (inference by
    default, as for curvature, SPEC 1.1)."""
    variables = {"params": params, **({"batch_stats": batch_stats} if batch_stats else {})}
    if train and batch_stats:
        logits, updates = model.apply(variables, x, train=True, mutable=["batch_stats"])
        batch_stats = updates["batch_stats"]
    else:
        logits = model.apply(variables, x, train=train)
    ce = optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), y)
    loss = ce.mean() if w is None else jnp.sum(ce * w) / jnp.maximum(jnp.sum(w), 1.0)
    return loss, (batch_stats, logits)


@functools.lru_cache(maxsize=32)
def _epoch_fn(model: nn.Module, info: D.DatasetInfo, batch_size: int, cfg: OptimizerConfig,
              total_steps: int, prunable: tuple[Any, tuple[bool, ...]] | None) -> Callable:
    """The compiled epoch, cached so repeated ``train`` calls (iterative pruning) reuse it."""
    flags = None if prunable is None else jax.tree.unflatten(prunable[0], prunable[1])
    build_tx = make_optimizer(cfg, total_steps, flags)

    def epoch(state: TrainState, x: jax.Array, y: jax.Array, key: jax.Array,
              mask: PyTree | None) -> tuple[TrainState, dict[str, jax.Array]]:
        tx = build_tx(mask)
        perm_key, aug_key = jax.random.split(key)
        idx = D.epoch_indices(perm_key, x.shape[0], batch_size)

        def step(carry, inputs):
            params, stats, opt_state = carry
            i, k = inputs
            xb = D.preprocess(x[i], info, key=k, train=True)
            (loss, (new_stats, logits)), grads = jax.value_and_grad(
                lambda p: loss_and_updates(model, p, stats, xb, y[i], train=True),
                has_aux=True)(params)
            updates, opt_state = tx.update(grads, opt_state, params)
            params = optax.apply_updates(params, updates)
            acc = jnp.mean(jnp.argmax(logits, -1) == y[i])
            return (params, new_stats, opt_state), (loss, acc)

        keys = jax.random.split(aug_key, idx.shape[0])
        (params, stats, opt_state), (losses, accs) = jax.lax.scan(
            step, (state.params, state.batch_stats, state.opt_state), (idx, keys))
        return (TrainState(params, stats, opt_state, state.epoch + 1),
                {"train_loss": losses.mean(), "train_accuracy": accs.mean()})

    return jax.jit(epoch)


@functools.partial(jax.jit, static_argnums=0)
def evaluate(model: nn.Module, params: PyTree, batch_stats: PyTree,
             batches: dict[str, Any]) -> EvalResult:
    """Loss and accuracy over padded batches ``{"x", "y", "w"}`` (inference mode).

    One compiled ``lax.map`` over the batch axis; padding (``w == 0``) is excluded exactly.
    """
    def one(b):
        loss, (_, logits) = loss_and_updates(model, params, batch_stats, b["x"], b["y"], b["w"])
        n = jnp.sum(b["w"])
        return loss * n, jnp.sum((jnp.argmax(logits, -1) == b["y"]) * b["w"]), n

    loss_sum, correct, n = jax.lax.map(one, batches)
    total = jnp.sum(n)
    return EvalResult(jnp.sum(loss_sum) / total, jnp.sum(correct) / total)


def preprocess_batches(batches: dict[str, np.ndarray], info: D.DatasetInfo) -> dict[str, Any]:
    """Normalise the ``"x"`` of padded batches once (inference preprocessing)."""
    x = jax.jit(jax.vmap(lambda xb: D.preprocess(xb, info, train=False)))(batches["x"])
    return {"x": x, "y": jnp.asarray(batches["y"]), "w": jnp.asarray(batches["w"])}


def train(model: nn.Module, variables: dict[str, PyTree], split: D.Split, info: D.DatasetInfo,
          cfg: OptimizerConfig, *, epochs: int, batch_size: int, key: jax.Array,
          mask: PyTree | None = None, prunable: PyTree | None = None,
          checkpoint_dir: Path | str | None = None, checkpoint_every: int = 1,
          progress: bool = True, description: str = "training") -> TrainResult:
    """Train ``model`` for ``epochs`` epochs (SPEC 2.4 recipe: SGD momentum, optional l1).

    With ``checkpoint_dir``, orbax saves the state every ``checkpoint_every`` epochs and a later
    call with the same arguments resumes from the latest checkpoint, giving the result of an
    uninterrupted run. ``mask`` (True = kept) keeps pruned weights at exactly 0."""
    if epochs < 0:
        raise ValueError(f"epochs must be >= 0, got {epochs}")
    if batch_size < 1 or batch_size > split.x.shape[0]:
        raise ValueError(f"batch_size must be in [1, {split.x.shape[0]}], got {batch_size}")
    total_steps = epochs * (split.x.shape[0] // batch_size)
    params = variables["params"]
    state = TrainState(params, variables.get("batch_stats", {}),
                       make_optimizer(cfg, total_steps, prunable)(mask).init(params),
                       jnp.asarray(0, jnp.int32))
    history: dict[str, list[float]] = {"train_loss": [], "train_accuracy": []}

    manager = None if checkpoint_dir is None else ckpt.manager(checkpoint_dir)
    if manager is not None and manager.latest_step() is not None:
        state, history = ckpt.restore(manager, (state, history))
    key_flags = None if prunable is None else (jax.tree.structure(prunable),
                                               tuple(bool(f) for f in jax.tree.leaves(prunable)))
    epoch_fn = _epoch_fn(model, info, batch_size, cfg, total_steps, key_flags)
    x, y = jnp.asarray(split.x), jnp.asarray(split.y)
    start = int(state.epoch)
    with progress_bar(description, total=epochs, completed=start, enabled=progress) as bar:
        for e in range(start, epochs):
            state, metrics = epoch_fn(state, x, y, jax.random.fold_in(key, e), mask)
            for name, value in metrics.items():
                history[name].append(float(value))
            if not np.isfinite(history["train_loss"][-1]):
                raise TrainingDiverged(
                    f"training diverged: the loss is {history['train_loss'][-1]} in epoch "
                    f"{e + 1}; lower the learning rate (or the l1 strength) and run again "
                    "(with --overwrite, or a new --out)")
            bar.advance(loss=history["train_loss"][-1], acc=history["train_accuracy"][-1])
            if manager is not None and ((e + 1) % checkpoint_every == 0 or e + 1 == epochs):
                ckpt.save(manager, e + 1, (state, history))
    if manager is not None:
        manager.close()
    return TrainResult(state, history)
