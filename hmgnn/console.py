"""Shared rich console (stderr) and progress bars, so stdout stays clean for tables, JSON and pipes."""

from __future__ import annotations

from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn,
                           TimeRemainingColumn)

console = Console(stderr=True)


def progress(transient: bool = False) -> Progress:
    """A progress bar for long work: description, bar, done/total, elapsed and remaining time."""
    return Progress(
        SpinnerColumn(),
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=transient,
    )


def info(message: str) -> None:
    console.print(message, highlight=False)
