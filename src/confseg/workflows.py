"""The one place that chains stages: train -> evaluate -> report.

``confseg train``, the demo and (later) every study cell call these functions; no stage calls
another stage itself.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from confseg.config import TrainConfig
from confseg.evaluation import evaluate_run
from confseg.report.run_report import write_run_report
from confseg.runs import FINISHED, TRAINED, RunFolder
from confseg.training import is_rank_zero, resume, train


def train_and_evaluate(cfg: TrainConfig, *, overwrite: bool = False, quiet: bool = False,
                       callbacks: Sequence[Any] = ()) -> RunFolder:
    """Train a new run, evaluate it on its test fold and render its report.

    Args:
        cfg: The run configuration (``cfg.out`` is the run folder).
        overwrite: Replace an existing run folder.
        quiet: No progress bars.
        callbacks: Extra Lightning callbacks for the fit.

    Returns:
        The finished run folder (status ``finished``; summary.json, report.html).
    """
    run = RunFolder(train(cfg, overwrite=overwrite, quiet=quiet, callbacks=callbacks))
    if not is_rank_zero():  # other DDP ranks stop after the fit; rank 0 evaluates
        return run
    return evaluate_and_report(run, quiet=quiet)


def resume_and_evaluate(run: str | Path | RunFolder, *, quiet: bool = False) -> RunFolder:
    """Continue an interrupted run, then evaluate it and render its report.

    A run whose fit had ended (status ``trained``) is only evaluated.
    """
    folder = run if isinstance(run, RunFolder) else RunFolder(run)
    if folder.require().status != TRAINED:
        resume(folder, quiet=quiet)
        if not is_rank_zero():
            return folder
    return evaluate_and_report(folder, quiet=quiet)


def evaluate_and_report(run: RunFolder, *, quiet: bool = False) -> RunFolder:
    """Evaluate a trained run on its test fold, write report.html, mark it finished."""
    evaluate_run(run, quiet=quiet)
    write_run_report(run)
    run.update_status(status=FINISHED, finished=time.strftime("%Y-%m-%dT%H:%M:%S"))
    return run
