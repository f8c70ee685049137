"""Shared steps of the pipelines: data + model set-up, training or resuming, the full-data loss.

Every pipeline (``spectrum``, ``limit``, ``sap``) starts the same way: load a data set, build a
Flax model from the zoo, initialise it from an explicit key, and train it (resuming from an
orbax checkpoint when one exists). This module holds that once.
"""

from __future__ import annotations

import dataclasses
import json
import math
import numbers
import shutil
import time
import types
import typing
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

__all__ = ["RunConfig", "Setup", "Timer", "UserError", "check_fields", "check_resume", "flag",
           "full_data_loss", "l1_budget", "prepare_out", "save_json", "set_up", "train_model"]


class UserError(ValueError):
    """A mistake in what the user asked for (a flag value, an output path, a resume under
    other settings). The command line prints the message and exits with status 2 (as
    argparse does), without a traceback."""


def flag(default: Any, help_text: str, *, choices: tuple[Any, ...] | None = None,
         low: float | None = None, high: float | None = None, positive: bool = False,
         training: bool = False) -> Any:
    """A dataclass field that ``prune_jax.cli`` turns into ``--name`` with this help text.

    The constraints are checked by :func:`check_fields` when a config is built (so from the
    command line and from Python alike): ``choices`` (allowed values), ``low``/``high``
    (inclusive bounds) and ``positive`` (``> 0``); floats must be finite. ``training=True``
    marks a setting that changes the trained model: resuming a checkpoint made under another
    value is refused (:func:`check_resume`).
    """
    meta: dict[str, Any] = {"help": help_text, "training": training}
    for name, value in (("choices", choices), ("low", low), ("high", high)):
        if value is not None:
            meta[name] = value
    if positive:
        meta["positive"] = True
    return dataclasses.field(default=default, metadata=meta)


def flag_name(field: str) -> str:
    """The command-line spelling of a config field: ``learning_rate`` -> ``--learning-rate``."""
    return "--" + field.replace("_", "-")


def _check_value(name: str, value: Any, tp: Any, meta: dict[str, Any]) -> None:
    optional = False
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        optional, tp = type(None) in typing.get_args(tp), args[0]
    if value is None:
        if not optional:
            raise UserError(f"{flag_name(name)} needs a value")
        return
    values = value if typing.get_origin(tp) in (tuple, list) else (value,)
    elem = typing.get_args(tp)[0] if typing.get_origin(tp) in (tuple, list) else tp
    if typing.get_origin(tp) in (tuple, list) and not values:
        raise UserError(f"{flag_name(name)} needs at least one value")
    for v in values:
        if elem is bool and not isinstance(v, bool):
            raise UserError(f"{flag_name(name)} must be True or False, got {v!r}")
        if elem is int and (isinstance(v, bool) or not isinstance(v, numbers.Integral)):
            raise UserError(f"{flag_name(name)} must be an integer, got {v!r}")
        if elem is float:
            if isinstance(v, bool) or not isinstance(v, numbers.Real):
                raise UserError(f"{flag_name(name)} must be a number, got {v!r}")
            if not math.isfinite(v):
                raise UserError(f"{flag_name(name)} must be a finite number, got {v}")
        if "choices" in meta and v not in meta["choices"]:
            raise UserError(f"{flag_name(name)} must be one of "
                            f"{', '.join(map(str, meta['choices']))}; got {v!r}")
        if elem in (int, float):
            if meta.get("positive") and not v > 0:
                raise UserError(f"{flag_name(name)} must be > 0, got {v}")
            if "low" in meta and v < meta["low"]:
                raise UserError(f"{flag_name(name)} must be >= {meta['low']}, got {v}")
            if "high" in meta and v > meta["high"]:
                raise UserError(f"{flag_name(name)} must be <= {meta['high']}, got {v}")


def check_fields(config: Any) -> None:
    """Check every field of a config dataclass against its :func:`flag` constraints.

    Raises :class:`UserError` naming the flag (``--learning-rate must be > 0, got -1``).
    """
    hints = typing.get_type_hints(type(config))
    for f in dataclasses.fields(config):
        _check_value(f.name, getattr(config, f.name), hints[f.name], dict(f.metadata))


def training_settings(config: Any) -> dict[str, Any]:
    """The fields marked ``training=True``: what a trained checkpoint depends on."""
    return {f.name: _jsonable(getattr(config, f.name)) for f in dataclasses.fields(config)
            if f.metadata.get("training")}


def prepare_out(config: Any) -> Path:
    """Create ``config.out`` (and its parents), or raise :class:`UserError` naming ``--out``."""
    out = Path(config.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as err:
        raise UserError(f"--out {out}: cannot write there ({err.strerror or err}); choose "
                        "another directory") from err
    return out


def check_resume(config: Any, checkpoint_dir: Path) -> None:
    """Refuse to resume a checkpoint trained under other settings (or wipe it with
    ``config.overwrite``); record the settings of a fresh run.

    Settings live in ``checkpoint_dir/settings.json`` next to the orbax steps. Only the
    fields marked ``training=True`` count: other flags (probes, steps, sweep points, ...)
    reuse the trained model.
    """
    settings = training_settings(config)
    path = checkpoint_dir / "settings.json"
    if getattr(config, "overwrite", False) and checkpoint_dir.exists():
        shutil.rmtree(checkpoint_dir)
    if checkpoint_dir.exists() and any(checkpoint_dir.iterdir()):
        saved = json.loads(path.read_text()) if path.exists() else None
        if saved is None:
            raise UserError(f"--out {config.out} holds a checkpoint without recorded settings "
                            "(made by an older version): use a new --out, or --overwrite to "
                            "train again")
        diff = [f"{flag_name(k)}: checkpoint {saved.get(k)!r}, now {v!r}"
                for k, v in settings.items() if saved.get(k) != v]
        if diff:
            raise UserError(f"--out {config.out} holds a model trained under other settings ("
                            + "; ".join(diff) + "). Use a new --out to keep both, or "
                            "--overwrite to train again here")
        return
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(settings, indent=2))


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """The flags every pipeline shares: data, model, the training recipe, seed and output.

    Subcommands subclass it (``limit.Config(RunConfig)``) and add or re-default fields.
    """

    model: str = flag("mlp_small", "model name", choices=M.MODEL_NAMES, training=True)
    dataset: str = flag("digits", "data set (digits and mnist1d are offline)",
                        choices=D.DATASET_NAMES, training=True)
    data_dir: str | None = flag(None, "tfds data directory (tfds data sets only)")
    epochs: int = flag(30, "training epochs", low=1, training=True)
    batch_size: int = flag(64, "training batch size", low=1, training=True)
    learning_rate: float = flag(0.05, "SGD learning rate (momentum 0.9, cosine decay)",
                                positive=True, training=True)
    l1: float = flag(0.0, "l1 strength lambda on the prunable kernels during training", low=0,
                     training=True)
    eval_batch_size: int = flag(512, "batch size for evaluation and the full-data HVP", low=1)
    seed: int = flag(0, "PRNG seed", low=0, training=True)
    out: Path = flag(Path("results"), "output directory (checkpoints, JSON, plots)")
    overwrite: bool = flag(False, "discard a checkpoint in --out and train again")
    progress: bool = flag(True, "show progress on stderr")

    def __post_init__(self) -> None:
        check_fields(self)


def l1_budget(config: RunConfig, num_train: int, momentum: float = 0.9) -> float:
    """The l1 budget ``lr * lambda * steps / (1 - momentum)`` of a run (SPEC 2.4).

    The total distance the l1 subgradient alone can move a weight over training at the
    peak learning rate (a cosine schedule halves it). What carries over between data sets is
    this budget relative to the initial weight scale, not ``lambda`` itself.
    """
    steps = config.epochs * (num_train // min(config.batch_size, num_train))
    return config.learning_rate * config.l1 * steps / (1.0 - momentum)


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
    """Load ``dataset`` (train and test splits), build and initialise ``model_name``.

    A model that cannot take the data set's inputs raises :class:`UserError` naming both.
    """
    train_split, info = D.load(dataset, "train", data_dir=data_dir, max_examples=max_train)
    test_split, _ = D.load(dataset, "test", data_dir=data_dir, max_examples=max_test)
    model = M.get_model(model_name, num_classes=info.num_classes)
    try:
        variables = M.init_variables(model, key, info.input_shape)
    except (ValueError, TypeError) as err:
        raise UserError(f"--model {model_name} does not take --dataset {dataset} inputs of "
                        f"shape {info.input_shape}: {err}") from err
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


def set_up_and_train(config: Any, timer: Timer, *, train_stage: str = "train",
                     check: Callable[[Setup], None] | None = None
                     ) -> tuple[Setup, TrainResult, jax.Array]:
    """The shared opening of ``spectrum`` and ``limit``: data, model, training (resumable).

    ``config`` is a :class:`RunConfig`. Before any data is read, ``--out`` is created and a
    checkpoint there is checked against the training settings (:func:`check_resume`).
    Returns the set-up, the training result and the key left for the curvature stage.
    """
    k_init, k_train, k_rest = jax.random.split(jax.random.key(config.seed), 3)
    prepare_out(config)
    check_resume(config, config.out / "checkpoints")
    with timer("data+model"):
        setup = set_up(config.model, config.dataset, key=k_init,
                       eval_batch_size=config.eval_batch_size, data_dir=config.data_dir)
    n = setup.train.x.shape[0]
    if config.batch_size > n:
        raise UserError(f"--batch-size {config.batch_size} exceeds the {n} training examples "
                        f"of --dataset {config.dataset}")
    if check is not None:  # the pipeline's own checks, before the expensive training
        check(setup)
    with timer(train_stage):
        trained = train_model(
            setup, OptimizerConfig(learning_rate=config.learning_rate, l1=config.l1),
            epochs=config.epochs, batch_size=config.batch_size, key=k_train,
            checkpoint_dir=config.out / "checkpoints", progress=config.progress)
    return setup, trained, k_rest


def cached_stage(path: Path, compute: Callable[[], dict[str, np.ndarray]],
                 settings: dict[str, Any]) -> dict[str, np.ndarray]:
    """The arrays of a pipeline stage, computed once per ``settings`` and kept at ``path``.

    ``path.npz`` holds the arrays and ``path.json`` the settings they were computed with; a
    later run with the same settings loads them instead of calling ``compute()``. Keep stage
    caches inside the checkpoint directory, so that ``--overwrite`` (a new trained model)
    discards them too.
    """
    arrays, meta = path.with_suffix(".npz"), path.with_suffix(".json")
    wanted = json.loads(json.dumps(_jsonable(settings)))
    if arrays.exists() and meta.exists() and json.loads(meta.read_text()) == wanted:
        with np.load(arrays) as stored:
            return dict(stored)
    values = {k: np.asarray(v) for k, v in compute().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(arrays, **values)
    meta.write_text(json.dumps(wanted))
    return values


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


def inference_inputs(setup: Setup, split: D.Split) -> jax.Array:
    """All inputs of ``split`` preprocessed for inference (normalised, no augmentation)."""
    return D.preprocess(jnp.asarray(split.x), setup.info)


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
