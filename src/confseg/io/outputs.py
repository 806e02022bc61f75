"""Which output folders ``--overwrite`` may replace: never an input, the working directory or home.

Every command that writes a folder (train, synth, import, study) asks :func:`check_output_folder`
before it creates or replaces anything.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path

from confseg.errors import ConfsegError


def _protected() -> list[Path]:
    """Folders no output may be, or contain: the working directory, home, the filesystem root."""
    out = [Path.cwd().resolve(), Path(Path.cwd().anchor).resolve()]
    home = os.environ.get("HOME")
    if home:
        out.append(Path(home).resolve())
    return out


def check_output_folder(out: str | os.PathLike[str], *, overwrite: bool, kind: str,
                        looks_like: Callable[[Path], bool],
                        inputs: Iterable[str | os.PathLike[str] | None] = (),
                        not_empty: str | None = None) -> bool:
    """Check that ``out`` may be written; return whether an existing folder must be replaced.

    Args:
        out: The output folder.
        overwrite: The user passed ``--overwrite``.
        kind: What the command writes ("run folder", "dataset folder", ...), for messages.
        looks_like: Whether an existing folder is recognisably that kind of output.
        inputs: Paths the command reads; the output may be none of them nor hold any of them.
        not_empty: Message for a non-empty folder without ``--overwrite`` (default: a generic
            one suggesting another folder or ``--overwrite``).

    Raises:
        ConfsegError: one line naming the folder and what to do.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfsegError(f"{out}: exists and is not a folder; choose a folder for the {kind}")
    target = out.resolve()
    for p in (Path(i) for i in inputs if i):
        src = p.resolve()
        if src == target or src.is_relative_to(target):
            raise ConfsegError(f"{out}: is (or holds) the input {p}; write the {kind} to another "
                               "folder")
    for p in _protected():
        if target == p or p.is_relative_to(target):
            raise ConfsegError(f"{out}: is the working directory, home or an ancestor of them; "
                               f"write the {kind} to a new folder")
    if not out.exists() or not any(out.iterdir()):
        return False
    if not overwrite:
        raise ConfsegError(not_empty or f"{out}: already exists and is not empty; choose a new "
                           "folder or pass --overwrite")
    if not looks_like(out):
        raise ConfsegError(f"{out}: not empty and not a {kind}; --overwrite only replaces a "
                           f"{kind}: choose a new folder")
    return True
