"""Shared steps of the pipelines: data + model set-up, training or resuming, the full-data loss.

Every pipeline (``spectrum``, ``limit``, ``sap``) starts the same way: load a data set, build a
Flax model from the zoo, initialise it from an explicit key, and train it (resuming from an
orbax checkpoint when one exists). This module holds that once.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from prune_jax import data as D
from prune_jax import models as M
from prune_jax.experiments.progress import console
from prune_jax.experiments.train import (
    OptimizerConfig,
    TrainResult,
    evaluate,
    loss_and_updates,
    preprocess_batches,
    train,
)
from prune_jax.tree import PyTree, prunable_tree

__all__ = ["Setup", "Timer", "flag", "full_data_loss", "save_json", "set_up", "train_model"]


def flag(default: Any, help_text: str, *, choices: tuple[str, ...] | None = None) -> Any:
    """A dataclass field that ``prune_jax.cli`` turns into ``--name`` with this help text."""
    meta: dict[str, Any] = {"help": help_text}
    if choices:
        meta["choices"] = choices
    return dataclasses.field(default=default, metadata=meta)


class Setup(NamedTuple):
    """Data, model and initial variables of one experiment."""

    model: nn.Module
    variables: dict[str, PyTree]
    train: D.Split
    test: D.Split
    info: D.DatasetInfo
    train_batches: dict[str, Any]
    test_batches: dict[str, Any]


def set_up(model_name: str, dataset: str, *, key: jax.Array, eval_batch_size: int = 512,
           data_dir: str | None = None, max_train: int | None = None,
           max_test: int | None = None) -> Setup:
    """Load ``dataset`` (train and test splits), build and initialise ``model_name``."""
    train_split, info = D.load(dataset, "train", data_dir=data_dir, max_examples=max_train)
    test_split, _ = D.load(dataset, "test", data_dir=data_dir, max_examples=max_test)
    model = M.get_model(model_name, num_classes=info.num_classes)
    variables = M.init_variables(model, key, info.input_shape)
    bs_train = min(eval_batch_size, train_split.x.shape[0])
    bs_test = min(eval_batch_size, test_split.x.shape[0])
    return Setup(model, variables, train_split, test_split, info,
                 preprocess_batches(D.padded_batches(train_split, bs_train), info),
                 preprocess_batches(D.padded_batches(test_split, bs_test), info))


def train_model(setup: Setup, cfg: OptimizerConfig, *, epochs: int, batch_size: int,
                key: jax.Array, checkpoint_dir: Path | None, progress: bool = True
                ) -> TrainResult:
    """Train ``setup.model`` (the l1 term, if any, on the prunable kernels only; SPEC 2.4)."""
    prunable = prunable_tree(setup.variables["params"])
    return train(setup.model, setup.variables, setup.train, setup.info, cfg, epochs=epochs,
                 batch_size=min(batch_size, setup.train.x.shape[0]), key=key,
                 prunable=prunable, checkpoint_dir=checkpoint_dir, progress=progress)


def set_up_and_train(config: Any, timer: Timer, *, train_stage: str = "train"
                     ) -> tuple[Setup, TrainResult, jax.Array]:
    """The shared opening of ``spectrum`` and ``limit``: data, model, training (resumable).

    ``config`` provides ``seed, model, dataset, data_dir, eval_batch_size, learning_rate, l1,
    epochs, batch_size, out, progress``; returns the set-up, the training result and the key
    left for the curvature stage.
    """
    k_init, k_train, k_rest = jax.random.split(jax.random.key(config.seed), 3)
    with timer("data+model"):
        setup = set_up(config.model, config.dataset, key=k_init,
                       eval_batch_size=config.eval_batch_size, data_dir=config.data_dir)
    with timer(train_stage):
        trained = train_model(
            setup, OptimizerConfig(learning_rate=config.learning_rate, l1=config.l1),
            epochs=config.epochs, batch_size=config.batch_size, key=k_train,
            checkpoint_dir=config.out / "checkpoints", progress=config.progress)
    return setup, trained, k_rest


def full_data_loss(setup: Setup, batch_stats: PyTree) -> Callable[[PyTree, dict], jax.Array]:
    """``loss_fn(params, batch)``: weighted mean cross-entropy of one padded batch, inference mode.

    BatchNorm runs on its running statistics (``batch_stats``), the toolkit's default mode for
    curvature (SPEC 1.1). Pair it with ``batch_sizes = batches["w"].sum(1)`` for the exact
    full-data-set mean.
    """
    model = setup.model

    def loss_fn(params: PyTree, batch: dict) -> jax.Array:
        return loss_and_updates(model, params, batch_stats, batch["x"], batch["y"],
                                batch["w"])[0]

    return loss_fn


def accuracy(setup: Setup, params: PyTree, batch_stats: PyTree, split: str = "test") -> float:
    """Accuracy on ``split`` ("train" or "test") in inference mode."""
    batches = setup.test_batches if split == "test" else setup.train_batches
    return float(evaluate(setup.model, params, batch_stats, batches).accuracy)


class Timer:
    """Wall time per named stage: ``with timer("train"): ...``; ``timer.seconds`` is a dict.

    With ``show=True`` a spinner names the running stage and a line reports its wall time,
    so long single compiled calls (SLQ over a data set) are visibly alive.
    """

    def __init__(self, show: bool = False) -> None:
        self.seconds: dict[str, float] = {}
        self.show = show

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        t0 = time.perf_counter()
        status = console.status(f"[bold]{name}[/bold] ...") if self.show else nullcontext()
        try:
            with status:
                yield
        finally:
            dt = time.perf_counter() - t0
            self.seconds[name] = self.seconds.get(name, 0.0) + dt
            if self.show:
                console.log(f"{name}: {dt:.1f} s")


def _jsonable(x: Any) -> Any:
    if dataclasses.is_dataclass(x) and not isinstance(x, type):
        return _jsonable(dataclasses.asdict(x))
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_jsonable(v) for v in x]
    if isinstance(x, Path):
        return str(x)
    if isinstance(x, jax.Array | np.ndarray | np.generic):
        arr = np.asarray(x)
        return arr.tolist()
    return x


def save_json(path: Path, obj: Any) -> Path:
    """Write ``obj`` (dataclasses, arrays and paths converted) as indented JSON."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(_jsonable(obj), indent=2, allow_nan=True))
    return path


def as_float(x: Any) -> float:
    """Host float of a scalar array."""
    return float(jnp.asarray(x))
