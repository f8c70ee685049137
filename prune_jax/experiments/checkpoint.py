"""Orbax checkpoints for long runs: a pytree ``state`` (restored into the shapes and dtypes of
a template) and a JSON ``meta`` (histories, records). orbax is the JAX ecosystem's
checkpointer: asynchronous, atomic (a killed save leaves no half-written step), sharding-aware.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jax
import orbax.checkpoint as ocp

__all__ = ["manager", "restore", "save"]


def manager(directory: Path | str, *, max_to_keep: int = 2) -> ocp.CheckpointManager:
    """A ``CheckpointManager`` on ``directory`` (created if missing) keeping the newest steps."""
    return ocp.CheckpointManager(
        Path(directory).absolute(),
        options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True))


def save(mgr: ocp.CheckpointManager, step: int, item: tuple[Any, Any]) -> None:
    """Save ``(state, meta)`` as step ``step`` and wait until it is on disk."""
    state, meta = item
    mgr.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                           meta=ocp.args.JsonSave(meta)))
    mgr.wait_until_finished()


def restore(mgr: ocp.CheckpointManager, template: tuple[Any, Any],
            step: int | None = None) -> tuple[Any, Any]:
    """Restore ``(state, meta)`` from ``step`` (default: latest) into ``template``'s shapes."""
    state, _ = template
    step = mgr.latest_step() if step is None else step
    if step is None:
        raise FileNotFoundError(f"no checkpoint in {mgr.directory}")
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, state)
    out = mgr.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract),
                                                    meta=ocp.args.JsonRestore()))
    restored = jax.tree.unflatten(jax.tree.structure(state), jax.tree.leaves(out.state))
    return restored, out.meta
