"""Progress display for long work (rich), silent when disabled or not on a terminal.

rich was chosen over tqdm because it renders both in terminals and in Jupyter and gives
tables for the result summaries from the same dependency.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

__all__ = ["ProgressHandle", "console", "progress_bar", "results_console"]

console = Console(stderr=True)
"""Progress, logs and messages: standard error."""

results_console = Console()
"""Result tables: standard output (so ``prune-jax limit > out.txt`` keeps them)."""


class ProgressHandle:
    """What :func:`progress_bar` yields: ``advance(**metrics)`` moves the bar by one."""

    def __init__(self, progress: Progress | None, task: Any) -> None:
        self._progress, self._task = progress, task

    def advance(self, n: int = 1, **metrics: float) -> None:
        if self._progress is None:
            return
        text = "  ".join(f"{k}={v:.4g}" for k, v in metrics.items())
        self._progress.update(self._task, advance=n, metrics=text)


@contextlib.contextmanager
def progress_bar(description: str, *, total: int, completed: int = 0,
                 enabled: bool = True) -> Iterator[ProgressHandle]:
    """Context manager showing a bar ``description [m/n] metrics`` while work runs."""
    if not enabled:
        yield ProgressHandle(None, None)
        return
    progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(),
                        MofNCompleteColumn(), TimeElapsedColumn(),
                        TextColumn("{task.fields[metrics]}"), console=console, transient=False)
    with progress:
        task = progress.add_task(description, total=total, completed=completed, metrics="")
        yield ProgressHandle(progress, task)
