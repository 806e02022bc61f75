"""Progress reporting for long work: a rich progress bar, or nothing with ``quiet``."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

ProgressFn = Callable[[int, int], None]
RateFn = Callable[[int, float], None]

console = Console(stderr=True)


@contextlib.contextmanager
def progress_bar(description: str, *, quiet: bool = False) -> Iterator[ProgressFn | None]:
    """Yield a ``progress(done, total)`` callback drawing a bar (None when ``quiet``)."""
    if quiet:
        yield None
        return
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeRemainingColumn(), console=console, transient=False) as bar:
        task = bar.add_task(description, total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update


@contextlib.contextmanager
def rate_bar(description: str, *, total: int | None = None, unit: str = "frames",
             quiet: bool = False) -> Iterator[RateFn | None]:
    """Yield a ``progress(done, per_second)`` callback: a bar with the running rate.

    Args:
        description: Shown before the bar.
        total: Items expected (None: unknown, e.g. a live feed).
        unit: What is counted (``frames/s`` is shown).
        quiet: Draw nothing (yields None).
    """
    if quiet:
        yield None
        return
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("{task.fields[rate]}"), TimeElapsedColumn(),
                  console=console, transient=False) as bar:
        task = bar.add_task(description, total=total, rate="")

        def update(done: int, per_second: float) -> None:
            bar.update(task, completed=done, rate=f"{per_second:.1f} {unit}/s")

        yield update
