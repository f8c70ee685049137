"""Shared steps of the pipelines: flags and their checks, data + model set-up, training or
resuming (orbax), the full-data loss, JSON output."""

from __future__ import annotations

import dataclasses
import json
import math
import numbers
import shutil
import time
import types
import typing
from collections.abc import Callable, Iterator, Mapping
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
    loss_and_updates,
    preprocess_batches,
    train,
)
from prune_jax.tree import PyTree, prunable_tree

__all__ = ["RunConfig", "Setup", "Timer", "UserError", "check_fields", "check_resume",
           "field_type", "flag", "full_data_loss", "l1_budget", "prepare_out", "save_json",
           "set_up", "train_model"]


class UserError(ValueError):
    """A mistake in what the user asked for (a flag value, an output path, a resume under
    other settings). The command line prints the message and exits with status 2 (as
    argparse does), without a traceback."""


def flag(default: Any, help_text: str, *, choices: tuple[Any, ...] | None = None,
         low: float | None = None, high: float | None = None, positive: bool = False,
         training: bool = False) -> Any:
    """A dataclass field that ``prune_jax.cli`` turns into ``--name`` with this help text.

    :func:`check_fields` checks ``choices``, ``low``/``high`` (inclusive) and ``positive``
    (``> 0``) when a config is built, from the command line and from Python alike; floats must
    be finite. ``training=True``: the setting changes the trained model, so resuming a
    checkpoint made under another value is refused (:func:`check_resume`).
    """
    return dataclasses.field(default=default, metadata={
        "help": help_text, "training": training, "choices": choices, "low": low, "high": high,
        "positive": positive})


def flag_name(field: str) -> str:
    """The command-line spelling of a config field: ``learning_rate`` -> ``--learning-rate``."""
    return "--" + field.replace("_", "-")


def field_type(tp: Any) -> tuple[Any, bool, bool]:
    """``(element type, optional, sequence)`` of a config field's annotation:
    ``float | None`` -> ``(float, True, False)``, ``tuple[str, ...]`` -> ``(str, False, True)``."""
    optional = False
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        optional = type(None) in typing.get_args(tp)
        tp = next(a for a in typing.get_args(tp) if a is not type(None))
    sequence = typing.get_origin(tp) in (tuple, list)
    return (typing.get_args(tp)[0] if sequence else tp), optional, sequence


def _check_value(name: str, value: Any, tp: Any, meta: Mapping[str, Any]) -> None:
    elem, optional, sequence = field_type(tp)
    opt = flag_name(name)
    if value is None:
        if not optional:
            raise UserError(f"{opt} needs a value")
        return
    if sequence and not value:
        raise UserError(f"{opt} needs at least one value")
    for v in value if sequence else (value,):
        if elem is bool and not isinstance(v, bool):
            raise UserError(f"{opt} must be True or False, got {v!r}")
        if elem is int and (isinstance(v, bool) or not isinstance(v, numbers.Integral)):
            raise UserError(f"{opt} must be an integer, got {v!r}")
        if elem is float and (isinstance(v, bool) or not isinstance(v, numbers.Real)):
            raise UserError(f"{opt} must be a number, got {v!r}")
        if elem is float and not math.isfinite(v):
            raise UserError(f"{opt} must be a finite number, got {v}")
        if meta.get("choices") is not None and v not in meta["choices"]:
            raise UserError(f"{opt} must be one of {', '.join(map(str, meta['choices']))}; "
                            f"got {v!r}")
        if elem in (int, float):
            if meta.get("positive") and not v > 0:
                raise UserError(f"{opt} must be > 0, got {v}")
            if meta.get("low") is not None and v < meta["low"]:
                raise UserError(f"{opt} must be >= {meta['low']}, got {v}")
            if meta.get("high") is not None and v > meta["high"]:
                raise UserError(f"{opt} must be <= {meta['high']}, got {v}")


def check_fields(config: Any) -> None:
    """Check every field of a config dataclass against its :func:`flag` constraints; raise
    :class:`UserError` naming the flag (``--learning-rate must be > 0, got -1``)."""
    hints = typing.get_type_hints(type(config))
    for f in dataclasses.fields(config):
        _check_value(f.name, getattr(config, f.name), hints[f.name], f.metadata)


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
    ``config.overwrite``); record the settings of a fresh run in
    ``checkpoint_dir/settings.json``. Only fields marked ``training=True`` count."""
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
    Subcommands subclass it (``limit.Config(RunConfig)``) and add or re-default fields."""

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
    """The l1 budget ``lr * lambda * steps / (1 - momentum)`` of a run (SPEC 2.4): how far the
    l1 subgradient alone can move a weight at the peak learning rate (a cosine schedule halves
    it). What carries over between data sets is this budget relative to the initial weight
    scale, not ``lambda`` itself."""
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
    """Load ``dataset`` (train and test splits), build and initialise ``model_name``; a model
    that cannot take the data set's inputs raises :class:`UserError` naming both."""
    train_split, info = D.load(dataset, "train", data_dir=data_dir, max_examples=max_train)
    test_split, _ = D.load(dataset, "test", data_dir=data_dir, max_examples=max_test)
    model = M.get_model(model_name, num_classes=info.num_classes)
    try:
        variables = M.init_variables(model, key, info.input_shape)
    except (ValueError, TypeError) as err:
        raise UserError(f"--model {model_name} does not take --dataset {dataset} inputs of "
                        f"shape {info.input_shape}: {err}") from err
    batches = [preprocess_batches(D.padded_batches(s, min(eval_batch_size, len(s.y))), info)
               for s in (train_split, test_split)]
    return Setup(model, variables, train_split, test_split, info, *batches)


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
    """The shared opening of ``spectrum`` and ``limit``: ``--out`` checked (:func:`check_resume`)
    before any data is read, then data, model, training (resumable). Returns the set-up, the
    training result and the key left for the curvature stage."""
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
    """The arrays of a pipeline stage, computed once per ``settings`` and kept at ``path.npz``
    (the settings at ``path.json``). Keep stage caches inside the checkpoint directory, so that
    ``--overwrite`` (a new trained model) discards them too."""
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
    """``loss_fn(params, batch)``: weighted mean cross-entropy of one padded batch, inference mode
    (BatchNorm on ``batch_stats``, SPEC 1.1). With ``batch_sizes = batches["w"].sum(1)`` it
    gives the exact full-data-set mean."""
    return lambda params, batch: loss_and_updates(setup.model, params, batch_stats, batch["x"],
                                                  batch["y"], batch["w"])[0]


def inference_inputs(setup: Setup, split: D.Split) -> jax.Array:
    """All inputs of ``split`` preprocessed for inference (normalised, no augmentation)."""
    return D.preprocess(jnp.asarray(split.x), setup.info)


class Timer:
    """Wall time per named stage: ``with timer("train"): ...``; ``timer.seconds`` is a dict.
    ``show=True`` shows a spinner per stage, so long single compiled calls are visibly alive."""

    def __init__(self, show: bool = False) -> None:
        self.seconds: dict[str, float] = {}
        self.show = show

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            with console.status(f"[bold]{name}[/bold] ...") if self.show else nullcontext():
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
        return np.asarray(x).tolist()
    return x


def save_json(path: Path, obj: Any) -> Path:
    """Write ``obj`` (dataclasses, arrays and paths converted) as indented JSON."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(_jsonable(obj), indent=2, allow_nan=True))
    return path

