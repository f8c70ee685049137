"""Progress display for long work (rich), silent when disabled or not on a terminal. rich, not
tqdm: it renders in terminals and Jupyter and also gives the result tables."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any, NamedTuple

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

__all__ = ["ProgressHandle", "console", "progress_bar", "results_console"]

console = Console(stderr=True)
"""Progress, logs and messages: standard error."""

results_console = Console()
"""Result tables: standard output (so ``prune-jax limit > out.txt`` keeps them)."""


class ProgressHandle(NamedTuple):
    """What :func:`progress_bar` yields: ``advance(**metrics)`` moves the bar by one."""

    progress: Progress | None
    task: Any

    def advance(self, n: int = 1, **metrics: float) -> None:
        if self.progress is not None:
            text = "  ".join(f"{k}={v:.4g}" for k, v in metrics.items())
            self.progress.update(self.task, advance=n, metrics=text)


@contextlib.contextmanager
def progress_bar(description: str, *, total: int, completed: int = 0,
                 enabled: bool = True) -> Iterator[ProgressHandle]:
    """Context manager showing a bar ``description [m/n] metrics`` while work runs."""
    if not enabled:
        yield ProgressHandle(None, None)
        return
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), TextColumn("{task.fields[metrics]}"), console=console,
                  transient=False) as progress:
        task = progress.add_task(description, total=total, completed=completed, metrics="")
        yield ProgressHandle(progress, task)
