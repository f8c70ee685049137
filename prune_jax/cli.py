"""``prune-jax`` command line: thin argument parsing over :mod:`prune_jax.experiments`.

Every subcommand is an experiment module with a frozen dataclass ``Config``, whose fields
become the flags (``field_name`` -> ``--field-name``), and ``run(config) -> dict``, also
callable from Python. So the command line and the Python API cannot drift apart: the flags
*are* the config. Modules are imported lazily so that ``prune-jax --help`` stays fast.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import sys
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


def add_dataclass_arguments(parser: argparse.ArgumentParser, cls: type) -> None:
    """Add one ``--flag`` per field of dataclass ``cls`` (types from its annotations)."""
    from prune_jax.experiments.common import field_type, flag_name

    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        tp, optional, sequence = field_type(hints[f.name])
        shown = str(f.default) if isinstance(f.default, Path) else repr(f.default)
        help_text = f"{f.metadata.get('help', '')} (default: {shown})".replace("%", "%%")
        kwargs: dict[str, Any] = {"default": f.default, "dest": f.name, "help": help_text}
        if f.metadata.get("choices"):
            kwargs["choices"] = f.metadata["choices"]
        if tp is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        elif sequence:
            kwargs.update(type=tp, nargs="+")
        elif optional and tp in (int, float):
            kwargs["type"] = lambda s, _t=tp: None if s.lower() == "none" else _t(s)
        elif tp in (int, float, str, Path):
            kwargs["type"] = tp
        parser.add_argument(flag_name(f.name), **kwargs)


def config_from_args(cls: type, args: argparse.Namespace) -> Any:
    """Build dataclass ``cls`` from parsed arguments (lists become tuples)."""
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls)}
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})


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
    """Entry point of the ``prune-jax`` console script. Exit status: 0 on success; 2 for a
    user error (bad flag value, unwritable ``--out``, resume under other training settings),
    with the message and no traceback, as argparse does; 1 when training diverges; 130 on
    Ctrl-C, with a hint that rerunning the same command resumes from the last checkpoint."""
    from prune_jax.experiments.common import UserError
    from prune_jax.experiments.train import TrainingDiverged

    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(command if command in SUBCOMMANDS else None)
    args = parser.parse_args(argv)
    module = importlib.import_module(SUBCOMMANDS[args.command][0])
    try:
        module.run(config_from_args(module.Config, args))
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
