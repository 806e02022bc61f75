"""Progress reporting for long work: a rich progress bar, or nothing with ``quiet``."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

ProgressFn = Callable[[int, int], None]

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
