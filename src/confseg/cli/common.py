"""What every command shares: one-line errors, thread settings, common options, ``--set``."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from functools import wraps
from typing import Annotated, Any, TypeVar

import typer
from rich.markup import escape

from confseg.errors import ConfsegError
from confseg.progress import console

F = TypeVar("F", bound=Callable[..., Any])
Threads = Annotated[int | None, typer.Option(
    help="CPU threads for torch (default: torch's own, with OpenMP threads that sleep instead "
         "of spin-waiting; 1 is fastest on a busy machine).")]


def set_threads(threads: int | None) -> None:
    """Use ``threads`` CPU threads: set before torch starts its pool where possible.

    Without ``--threads`` (and without ``OMP_NUM_THREADS``), a machine that is already busy
    (1-minute load average within half a core of the core count) gets 1 thread: there torch's
    spin-waiting OpenMP threads fight the other work (measured in docs/results.md, "CPU
    settings"); an idle machine keeps torch's default, which is fastest there.
    """
    if threads is None:
        if "OMP_NUM_THREADS" in os.environ or not hasattr(os, "getloadavg"):
            return
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (
            os.cpu_count() or 1)
        if cores > 1 and os.getloadavg()[0] >= cores - 0.5:
            threads = 1
        else:
            return
    if threads < 1:
        raise ConfsegError(f"--threads {threads}: give a number >= 1")
    os.environ["OMP_NUM_THREADS"] = str(threads)
    os.environ["MKL_NUM_THREADS"] = str(threads)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")]
Overwrite = Annotated[bool, typer.Option("--overwrite", help="Replace an existing output folder.")]


def error_line(message: str) -> None:
    """Print one ``error:`` line.

    Escaped: messages hold brackets such as ``confseg[medical]`` that rich would otherwise
    take for markup and drop.
    """
    console.print(f"[red]error:[/red] {escape(message)}", highlight=False, soft_wrap=True)


def user_errors(fn: F) -> F:
    """A user mistake becomes one ``error:`` line and exit status 2, never a traceback.

    ConfsegError carries the message; an OSError on a path the user gave (permission denied,
    disk full, a file where a folder should be) is reported by its file name. Ctrl-C prints
    where the work stands and exits 130.
    """

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except ConfsegError as exc:
            error_line(str(exc))
            raise typer.Exit(getattr(exc, "exit_code", 2)) from None
        except OSError as exc:
            where = exc.filename or "a file"
            error_line(f"{where}: {exc.strerror or exc}; check the path and its permissions")
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            error_line("interrupted (Ctrl-C); nothing more was written")
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


def parse_sets(items: list[str]) -> dict[str, Any]:
    """``KEY=VALUE`` pairs; values are read as YAML scalars (``3``, ``0.5``, ``true``, text)."""
    import yaml

    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfsegError(f"--set {item!r}: write KEY=VALUE, e.g. --set augment=0.5")
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError:
            value = raw
        out[key.strip().replace("-", "_")] = value
    return out
