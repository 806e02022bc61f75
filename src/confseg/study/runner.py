"""Start, continue and inspect a study: the cells of a StudySpec run by an executor.

``run_study`` writes ``study.yaml`` and the shared ``splits.json`` once, then runs every
cell that is not finished (a rerun of the same spec skips finished cells and resumes the
others from their last checkpoint), then collects ``results/``. ``study_status`` reads the
cells' ``run.json`` files; a cell marked running whose study process is gone is reported
as interrupted.
"""

from __future__ import annotations

import logging
import os
import platform
import socket
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from confseg.data import Dataset, load_dataset
from confseg.data.info import dataset_info
from confseg.data.splits import make_splits
from confseg.errors import StudyError
from confseg.progress import console
from confseg.runs import FAILED, FINISHED, INTERRUPTED, RUNNING, TRAINED, StudyFolder
from confseg.study.collect import collect
from confseg.study.executors import Plan, make_executor
from confseg.study.spec import Cell, StudySpec
from confseg.targets import Threshold, parse_strategy

log = logging.getLogger("confseg")

PENDING = "pending"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _runner_alive(status: dict[str, Any]) -> bool:
    pid, host = status.get("pid"), status.get("host")
    return (status.get("state") == RUNNING and isinstance(pid, int) and pid != os.getpid()
            and host == socket.gethostname() and _alive(pid))


def open_study(spec: StudySpec, out: str | os.PathLike[str], *, overwrite: bool = False,
               command: str | None = None) -> StudyFolder:
    """The study folder for ``spec``: a new one, or the existing one with the same spec.

    Raises:
        StudyError: the folder holds another study (or something else), or the study is
            running in another process.
    """
    folder = StudyFolder(Path(out).resolve())
    if folder.is_study() and not overwrite:
        old = StudySpec.load(folder)
        diff = old.differences(spec)
        if diff:
            raise StudyError(f"{out}: holds a study with another {diff[0]} "
                             f"({getattr(old, diff[0])!r}); rerun with the same options to "
                             "continue it, pick another --out, or pass --overwrite")
        if _runner_alive(folder.read_status()):
            raise StudyError(f"{out}: the study is running (pid {folder.read_status()['pid']});"
                             f" watch it with `confseg study status {out}`")
        return folder
    folder.prepare(overwrite=overwrite, inputs=[spec.data])
    ds = load_dataset(spec.data)
    warn_same_targets(spec, ds)
    splits = make_splits(ds, k=spec.k, seed=spec.split_seed)
    from confseg.data import write_splits

    write_splits(folder.splits_path, splits)
    import confseg

    folder.write_spec({**spec.to_dict(), "run": {
        "command": command or " ".join(sys.argv), "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "confseg": confseg.__version__, "python": platform.python_version(),
        "cwd": os.getcwd()}})
    return folder


def warn_same_targets(spec: StudySpec, ds: Dataset) -> None:
    """Warn when two threshold strategies keep the same pixels on this data (same targets).

    With confidence levels 20/40/60/80/100 %, ``threshold:0.5`` and ``threshold:0.6`` keep the
    same pixels: their cells train the same model twice.
    """
    info = dataset_info(ds)
    levels = sorted({lv / 100 for c in info["classes"].values() for lv in c["levels"] if lv > 0})
    seen: dict[float | None, str] = {}
    for s in spec.strategies:
        strat = parse_strategy(s)
        if not isinstance(strat, Threshold) or strat.t <= 0:
            continue
        kept = next((lv for lv in levels if lv >= strat.t - 1e-9), None)
        if kept in seen:
            log.warning(f"{s} and {seen[kept]} keep the same pixels on {ds.root} (confidence "
                        f"levels {', '.join(f'{lv:.0%}' for lv in levels)}): their cells train "
                        "on identical targets")
        else:
            seen[kept] = s


def run_study(spec: StudySpec, out: str | os.PathLike[str], *, jobs: int | None = None,
              threads: int | None = None, executor: str = "local",
              ray_address: str | None = None, overwrite: bool = False, quiet: bool = False,
              command: str | None = None, examples: int = 4) -> dict[str, Any]:
    """Run (or continue) a study and collect its results.

    Args:
        spec: What to train.
        out: The study folder.
        jobs: Cells at once (default: one per GPU, else one per core).
        threads: CPU threads per cell (default: cores // jobs).
        executor: ``local`` (worker processes) or ``ray``.
        ray_address: A running Ray cluster (default: a local ``ray.init()``).
        overwrite: Replace an existing study folder.
        quiet: No progress bar.
        command: The command line recorded in ``study.yaml``.
        examples: Example images in the report.

    Returns:
        The collected summary (``results/summary.json``), with ``"status"`` counts.
    """
    plan = Plan.make(jobs=jobs, threads=threads)
    ex = make_executor(executor, plan, address=ray_address)
    folder = open_study(spec, out, overwrite=overwrite, command=command)
    spec = StudySpec.load(folder)  # absolute paths as stored
    cells = spec.cells()
    todo = [c for c in cells if cell_status(folder, c) != FINISHED]
    t0 = time.perf_counter()
    folder.update_status(state=RUNNING, pid=os.getpid(), host=socket.gethostname(),
                         started=time.strftime("%Y-%m-%dT%H:%M:%S"), executor=executor,
                         jobs=plan.jobs, threads=plan.threads, gpus=plan.gpus,
                         cells=len(cells), todo=len(todo))
    if not quiet:
        console.print(f"study {folder.root}: {len(cells)} cells, {len(cells) - len(todo)} "
                      f"finished, {len(todo)} to run ({executor}, {plan.jobs} at once x "
                      f"{plan.threads} thread{'s' if plan.threads > 1 else ''})")
    counts: Counter[str] = Counter()
    try:
        _run_with_progress(ex, folder, todo, counts, quiet=quiet)
    except BaseException:
        folder.update_status(state=INTERRUPTED, wall_seconds=round(time.perf_counter() - t0, 1))
        raise
    if not quiet:
        console.print("collecting results ...")
    summary = collect(folder, spec, examples=examples)
    state = FINISHED if summary["finished_cells"] == len(cells) else FAILED
    wall = round(time.perf_counter() - t0, 1)
    folder.update_status(state=state, wall_seconds=wall, last_run=counts,
                         ended=time.strftime("%Y-%m-%dT%H:%M:%S"))
    summary["status"] = dict(Counter(cell_status(folder, c) for c in cells))
    summary["wall_seconds"] = wall
    return summary


def _run_with_progress(ex: Any, folder: StudyFolder, todo: list[Cell], counts: Counter[str],
                       *, quiet: bool) -> None:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    if quiet or not todo:
        ex.run(folder, todo, lambda c, s: counts.update([s]))
        return
    with Progress(TextColumn("[bold]cells"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("{task.fields[last]}"), TimeElapsedColumn(), TextColumn("ETA"),
                  TimeRemainingColumn(), console=console) as bar:
        task = bar.add_task("cells", total=len(todo), last="")

        def done(cell: Cell, status: str) -> None:
            counts.update([status])
            mark = "" if status == FINISHED else f" [red]{status}[/red]"
            bar.update(task, advance=1, last=f"{cell.key}{mark}")
            folder.update_status(updated=time.strftime("%Y-%m-%dT%H:%M:%S"),
                                 last_cell=cell.key)

        ex.run(folder, todo, done)


def cell_status(folder: StudyFolder, cell: Cell, *, runner_alive: bool | None = None) -> str:
    """``pending``, ``running``, ``finished``, ``failed`` or ``interrupted`` for one cell."""
    run = folder.cell(cell.slug, cell.fold, cell.seed)
    st = run.status
    if st is None:
        return PENDING
    if st in (RUNNING, TRAINED):
        alive = _runner_alive(folder.read_status()) if runner_alive is None else runner_alive
        return RUNNING if alive else INTERRUPTED
    return st


def study_status(out: str | os.PathLike[str]) -> dict[str, Any]:
    """Every cell's status, counts, and an ETA from the finished cells' times.

    Returns:
        ``{"study", "state", "counts", "cells": [{"cell", "status", "seconds", "error"}],
        "eta_seconds", "jobs"}``.
    """
    folder = StudyFolder(out).require()
    spec = StudySpec.load(folder)
    runner = folder.read_status()
    alive = _runner_alive(runner) or (runner.get("state") == RUNNING
                                      and runner.get("pid") == os.getpid())
    cells = []
    times = []
    for cell in spec.cells():
        status = cell_status(folder, cell, runner_alive=alive)
        st = folder.cell(cell.slug, cell.fold, cell.seed).read_status()
        secs = st.get("cell_seconds")
        if status == FINISHED and secs:
            times.append(float(secs))
        cells.append({"cell": cell.key, "strategy": cell.strategy, "fold": cell.fold,
                      "seed": cell.seed, "status": status, "seconds": secs,
                      "epochs": st.get("epochs"), "error": st.get("error")})
    counts = Counter(c["status"] for c in cells)
    left = counts[PENDING] + counts[RUNNING] + counts[INTERRUPTED]
    jobs = int(runner.get("jobs") or 1)
    eta = (sum(times) / len(times)) * left / jobs if times and left else None
    state = runner.get("state", PENDING)
    if state == RUNNING and not alive:
        state = INTERRUPTED
    return {"study": str(folder.root), "state": state, "counts": dict(counts),
            "total": len(cells), "cells": cells, "eta_seconds": eta, "jobs": jobs,
            "wall_seconds": runner.get("wall_seconds")}
