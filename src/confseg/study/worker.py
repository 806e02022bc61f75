"""The local executor's worker: ``python -m confseg.study.worker STUDY KEY [PARENT_PID]``.

Runs one cell (:func:`confseg.study.cell.run_cell`) and exits 0 (finished), 1 (failed; the
error is in the cell's ``run.json``), 2 (bad arguments) or 130 (interrupted). It dies with
the study process, so killing a study never leaves orphans training.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from confseg.errors import ConfsegError
from confseg.runs import FAILED, INTERRUPTED, StudyFolder
from confseg.study.cell import find_cell, run_cell
from confseg.study.spec import StudySpec


def _die_with_parent() -> None:
    """Ask Linux to SIGKILL this worker when the study process dies (no orphans training)."""
    try:
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: the worker may outlive a killed parent
        pass


def main(argv: list[str] | None = None) -> int:
    """Worker entry point: ``python -m confseg.study.worker STUDY KEY [PARENT_PID]``."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) not in (2, 3):
        print("usage: python -m confseg.study.worker STUDY KEY [PARENT_PID]", file=sys.stderr)
        return 2
    _die_with_parent()
    if len(args) == 3 and os.getppid() != int(args[2]):
        return 1  # the parent died before the death signal was armed
    folder = StudyFolder(Path(args[0]))
    try:
        spec = StudySpec.load(folder)
        cell = find_cell(spec, args[1])
    except ConfsegError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    status = run_cell(folder, spec, cell)
    if status == INTERRUPTED:
        return 130
    if status == FAILED:
        run = folder.cell(cell.slug, cell.fold, cell.seed)
        print(f"error: {run.read_status().get('error', 'failed')}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
