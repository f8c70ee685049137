"""``prune-jax`` command line: thin argument parsing over :mod:`prune_jax.experiments`.

Every subcommand is an experiment module that exposes

* ``Config``: a frozen dataclass whose fields (with ``metadata={"help": ...}``) become the
  command-line flags (``field_name`` -> ``--field-name``), and
* ``run(config) -> dict``: the pipeline, also callable from Python and notebooks.

So the command line and the Python API can never drift apart: the flags *are* the config.
Modules are imported lazily so that ``prune-jax --help`` stays fast.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import sys
import types
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any

SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "spectrum": ("prune_jax.experiments.spectrum",
                 "Hessian spectrum (top eigenvalues, trace, SLQ density) of a trained model."),
    "limit": ("prune_jax.experiments.limit",
              "Fundamental pruning limit: l1 training, spectrum, predicted vs actual sparsity."),
    "calibrate": ("prune_jax.experiments.calibrate",
                  "Predicted vs actual pruning limits over a grid of l1 values, seeds, models "
                  "and data sets."),
    "sap": ("prune_jax.experiments.sap",
            "Iterative pruning: SAP (PQ Index) vs One Shot vs Lottery Ticket."),
    "gap": ("prune_jax.experiments.gap",
            "Structured vs unstructured pruning: the exponential-gap experiment."),
}


def _unwrap_optional(tp: Any) -> tuple[Any, bool]:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return tp, False


def add_dataclass_arguments(parser: argparse.ArgumentParser, cls: type) -> None:
    """Add one ``--flag`` per field of dataclass ``cls`` (types from its annotations)."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        tp, optional = _unwrap_optional(hints[f.name])
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            default = None
        flag = "--" + f.name.replace("_", "-")
        help_text = f.metadata.get("help", "")
        shown = str(default) if isinstance(default, Path) else repr(default)
        kwargs: dict[str, Any] = {"default": default, "dest": f.name,
                                  "help": f"{help_text} (default: {shown})"}
        choices = f.metadata.get("choices")
        if choices:
            kwargs["choices"] = choices
        if tp is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, **kwargs)
            continue
        origin = typing.get_origin(tp)
        if origin in (tuple, list):
            elem = typing.get_args(tp)[0]
            parser.add_argument(flag, type=elem, nargs="+", **kwargs)
            continue
        if tp is Path:
            kwargs["type"] = Path
        elif tp in (int, float, str):
            kwargs["type"] = tp
        if optional and tp in (int, float):
            kwargs["type"] = lambda s, _t=tp: None if s.lower() == "none" else _t(s)
        parser.add_argument(flag, **kwargs)


def config_from_args(cls: type, args: argparse.Namespace) -> Any:
    """Build dataclass ``cls`` from parsed arguments (lists become tuples)."""
    values = {}
    for f in dataclasses.fields(cls):
        v = getattr(args, f.name)
        values[f.name] = tuple(v) if isinstance(v, list) else v
    return cls(**values)


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The ``prune-jax`` parser; only ``command``'s module is imported to add its flags."""
    parser = argparse.ArgumentParser(
        prog="prune-jax", description="prune_jax: predict and study neural-network pruning "
        "(Hessian spectra, pruning limits, PQ Index / SAP, structured vs unstructured).")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name == command:
            add_dataclass_arguments(p, importlib.import_module(module_name).Config)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``prune-jax`` console script.

    Exit status: 0 on success; 2 for a user error (a bad flag value, an output directory that
    cannot be written, a resume under other training settings), with the message and no
    traceback, as argparse does; 1 when training diverges; 130 on Ctrl-C, with a hint that
    rerunning the same command resumes from the last checkpoint.
    """
    from prune_jax.experiments.common import UserError
    from prune_jax.experiments.train import TrainingDiverged

    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(command if command in SUBCOMMANDS else None)
    args = parser.parse_args(argv)
    module = importlib.import_module(SUBCOMMANDS[args.command][0])
    try:
        config = config_from_args(module.Config, args)
        module.run(config)
    except UserError as err:
        print(f"prune-jax {args.command}: error: {err}\n(see prune-jax {args.command} --help)",
              file=sys.stderr)
        return 2
    except TrainingDiverged as err:
        print(f"prune-jax {args.command}: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        out = getattr(args, "out", None)
        where = f" from the checkpoints in {out}" if out is not None else ""
        print(f"\nprune-jax {args.command}: interrupted. Run the same command again to resume"
              f"{where}.", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
