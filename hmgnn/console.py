"""Shared rich console (stderr) and progress bars, so stdout stays clean for tables, JSON and pipes. Where stderr is
no terminal (a pipe, a log file), nothing is redrawn or wrapped: each message is one line, each bar one plain line
when its work is done."""

from __future__ import annotations

import time

from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TaskID, TextColumn,
                           TimeElapsedColumn, TimeRemainingColumn)

console = Console(stderr=True)


class PlainProgress(Progress):
    """A Progress for a console that is no terminal: no live display (whose redraws a pipe would keep as residue
    lines), and one line per task when the bar stops: its last description, what it counted and how long it took."""

    def __init__(self, unit: str = "") -> None:
        super().__init__(console=console, auto_refresh=False, disable=True)
        self.unit = unit
        self._started: dict[TaskID, float] = {}

    def add_task(self, description: str, *args, **kwargs) -> TaskID:
        task = super().add_task(description, *args, **kwargs)
        self._started[task] = time.perf_counter()
        return task

    def __exit__(self, exc_type, exc_val, exc_tb) -> None:
        if exc_type is not None:  # the work failed: no line says it finished
            self._started.clear()
        super().__exit__(exc_type, exc_val, exc_tb)

    def stop(self) -> None:
        for task in self.tasks:
            if task.id not in self._started:
                continue
            seconds = time.perf_counter() - self._started.pop(task.id)
            unit = task.fields.get("unit", self.unit)
            if task.total is not None:
                counted = f"{task.completed:,.0f} of {task.total:,.0f}{' ' + unit if unit else ''}, "
            else:
                counted = ""
            console.print(f"{task.description} ({counted}{seconds:.1f} s)", highlight=False, markup=False,
                          soft_wrap=True)
        super().stop()


class _UnitProgress(Progress):
    """A live bar whose tasks each name what they count (`add_task(..., unit=...)`, else the bar's unit)."""

    def __init__(self, *columns, unit: str = "", **kwargs) -> None:
        super().__init__(*columns, **kwargs)
        self.unit = unit

    def add_task(self, description: str, *args, **kwargs) -> TaskID:
        kwargs.setdefault("unit", self.unit)
        return super().add_task(description, *args, **kwargs)


def progress(transient: bool = False, unit: str = "") -> Progress:
    """A progress bar for long work: description, bar, done/total `unit` (what it counts: "steps", "customers";
    a task may name its own with `add_task(..., unit=...)`), elapsed and remaining time. Without a terminal, a
    `PlainProgress`: one line per finished task."""
    if not console.is_terminal:
        return PlainProgress(unit)
    columns = [SpinnerColumn(), TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[unit]}")]  # what done/total counts
    return _UnitProgress(*columns, TimeElapsedColumn(), TimeRemainingColumn(), unit=unit, console=console,
                         transient=transient)


def info(message: str) -> None:
    """One message on stderr; piped, one line however long (no wrapping at the console's width)."""
    console.print(message, highlight=False, soft_wrap=not console.is_terminal)
