"""Run one study cell to the end: train (or resume) it, evaluate it, render its report.

Executors call :func:`run_cell` in a worker process (``python -m confseg.study.worker`` for
the local executor, a Ray task for Ray). A cell that was interrupted resumes from its last
checkpoint; a finished one is left alone and keeps only ``best.ckpt``; a failure is written
to the cell's ``run.json`` (status ``failed``, ``error``) and the other cells go on.
"""

from __future__ import annotations

import time
import traceback

from confseg.errors import ConfsegError, Interrupted, StudyError
from confseg.runs import FAILED, FINISHED, INTERRUPTED, TRAINED, StudyFolder
from confseg.study.spec import Cell, StudySpec
from confseg.workflows import evaluate_and_report, resume_and_evaluate, train_and_evaluate


def find_cell(spec: StudySpec, key: str) -> Cell:
    """The cell of ``spec`` whose key is ``key``."""
    for cell in spec.cells():
        if cell.key == key:
            return cell
    raise StudyError(f"no cell {key!r} in this study")


def run_cell(folder: StudyFolder, spec: StudySpec, cell: Cell, *, quiet: bool = True) -> str:
    """Bring one cell to ``finished``; returns the status it ends with.

    Never raises for a failure of the cell itself: the error goes to its ``run.json``.
    """
    run = folder.cell(cell.slug, cell.fold, cell.seed)
    t0 = time.perf_counter()
    try:
        state = run.status if run.is_run() else None
        if state == FINISHED:
            return FINISHED
        if state == TRAINED:
            evaluate_and_report(run, quiet=quiet)
        elif state is not None and run.checkpoint("last").exists():
            resume_and_evaluate(run, quiet=quiet)
        else:
            cfg = spec.cell_config(cell, folder.root)
            train_and_evaluate(cfg, overwrite=True, quiet=quiet)
    except Interrupted:  # Ctrl-C: the run folder says interrupted; the study stops
        return INTERRUPTED
    except (ConfsegError, Exception) as exc:  # the cell fails; the study goes on
        mark_failed(folder, cell, f"{type(exc).__name__}: {exc}",
                    detail=None if isinstance(exc, ConfsegError) else traceback.format_exc())
        return FAILED
    run.update_status(cell_seconds=round(time.perf_counter() - t0, 2))
    # A finished cell never resumes: last.ckpt (the optimizer state) would be two thirds of
    # its disk, and a study has dozens of cells.
    run.checkpoint("last").unlink(missing_ok=True)
    return FINISHED


def mark_failed(folder: StudyFolder, cell: Cell, error: str, *, detail: str | None = None
                ) -> None:
    """Write ``status: failed`` and the error into the cell's ``run.json``."""
    run = folder.cell(cell.slug, cell.fold, cell.seed)
    run.root.mkdir(parents=True, exist_ok=True)
    fields = {"status": FAILED, "error": error.strip().splitlines()[0][:500] if error.strip()
              else "failed", "failed": time.strftime("%Y-%m-%dT%H:%M:%S")}
    if detail:
        fields["traceback"] = detail[-4000:]
    run.update_status(**fields)
