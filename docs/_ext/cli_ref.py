"""``cli-help`` directive: the ``--help`` text of ``prune-jax`` (or one subcommand) at build time.

In MyST markdown::

    ```{cli-help}
    ```

    ```{cli-help} limit
    ```

The text is ``format_help()`` of the real parser, :func:`prune_jax.cli.build_parser`, so the
reference can never drift from the flags (which are the fields of each experiment's ``Config``
dataclass). No subprocess and no ``exec``: the parser is built in-process. The width is fixed
(``COLUMNS``) so the output does not depend on the terminal that runs the build.
"""

from __future__ import annotations

import argparse
import os
from contextlib import contextmanager
from typing import Any, ClassVar

from docutils import nodes
from docutils.parsers.rst import directives
from sphinx.application import Sphinx
from sphinx.util.docutils import SphinxDirective

WIDTH = 96


@contextmanager
def _columns(width: int):
    old = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = str(width)
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("COLUMNS", None)
        else:
            os.environ["COLUMNS"] = old


def _subparser(parser: argparse.ArgumentParser, name: str) -> argparse.ArgumentParser:
    for action in parser._actions:  # argparse has no public accessor for subparsers
        if isinstance(action, argparse._SubParsersAction):
            if name in action.choices:
                return action.choices[name]
    raise KeyError(name)


def cli_help(command: str | None = None, width: int = WIDTH) -> str:
    """``prune-jax --help`` (``command=None``) or ``prune-jax COMMAND --help`` as a string."""
    from prune_jax import cli

    with _columns(width):
        parser = cli.build_parser(command)
        if command is None:
            return parser.format_help()
        if command not in cli.SUBCOMMANDS:
            raise ValueError(f"unknown prune-jax subcommand {command!r}; "
                             f"known: {', '.join(cli.SUBCOMMANDS)}")
        return _subparser(parser, command).format_help()


class CliHelp(SphinxDirective):
    """Render the argparse help of ``prune-jax [COMMAND]`` as a literal block."""

    optional_arguments = 1
    has_content = False
    option_spec: ClassVar[dict[str, Any]] = {"width": directives.positive_int}

    def run(self) -> list[nodes.Node]:
        command = self.arguments[0] if self.arguments else None
        try:
            text = cli_help(command, self.options.get("width", WIDTH))
        except Exception as err:  # a broken parser must fail the -W build loudly
            raise self.error(f"cli-help {command or ''}: {err!r}") from err
        from prune_jax import cli

        # Rebuild when the CLI or the experiment modules (their Config) change.
        self.env.note_dependency(cli.__file__)
        if command is not None:
            import importlib

            module = importlib.import_module(cli.SUBCOMMANDS[command][0])
            self.env.note_dependency(module.__file__)
        block = nodes.literal_block(text, text)
        block["language"] = "text"
        return [block]


def setup(app: Sphinx) -> dict[str, object]:
    app.add_directive("cli-help", CliHelp)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
