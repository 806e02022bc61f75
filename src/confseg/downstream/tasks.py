"""Downstream tasks: the design matrix of each task from cached features and the clinical table.

- ``sf``: S/F per patient-day (regression) from that day's features.
- ``sf-change``: up / down / same between consecutive days of a patient (|delta S/F| within
  ``tolerance`` is same) from the difference of the two days' features.
- ``outcome``: a binary column per patient (readmission, a day-30 state, a test result) from
  the mean of the patient's day features.
- ``severity``: the per-video expert score (items' ``severity``) from the video's features.

Every row carries its patient, the group of every split (no patient in two folds).
"""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from confseg.data import Dataset
from confseg.data.clinical import ClinicalTable
from confseg.downstream.folder import CLINICAL, DownstreamFolder, read_table
from confseg.errors import DatasetError

TASKS = ("sf", "sf-change", "outcome", "severity")
KINDS = {"sf": "regression", "sf-change": "multiclass", "outcome": "binary",
         "severity": "ordinal"}
DEFAULT_TARGET = {"sf": "sf_ratio", "sf-change": "sf_ratio", "outcome": "readmit_30d",
                  "severity": "severity"}
CHANGE_LABELS = ("down", "same", "up")
_KEYS = ("patient", "day", "video", "view", "seen_in_training", "n_views", "n_frames")


@dataclass
class TaskTable:
    """A task's samples: features ``X``, target ``y``, patient ``groups`` and row keys."""

    task: str
    kind: str
    X: np.ndarray
    y: np.ndarray
    groups: np.ndarray
    features: list[str]
    keys: list[str]
    classes: tuple[str, ...] = ()


def check_task(task: str) -> str:
    """``task`` if known, else a DatasetError naming the tasks."""
    if task not in TASKS:
        raise DatasetError(f"task {task!r}; choose one of {', '.join(TASKS)}")
    return task


def task_table(task: str, folder: DownstreamFolder, source: str, ds: Dataset, *,
               target: str | None = None, tolerance: float = 15.0,
               positive: Sequence[str] = ()) -> TaskTable:
    """Build the samples of ``task`` from one feature source of a downstream folder.

    Args:
        task: One of :data:`TASKS`.
        folder: The downstream folder holding the cached features.
        source: A source of the folder (``raw``, ``acquisition``, a segmenter ...), or
            ``clinical``: the clinical table's covariate columns (not for ``severity``).
        ds: The dataset (its clinical table and items).
        target: The target column (default: the task's, :data:`DEFAULT_TARGET`).
        tolerance: ``sf-change``: a change of at most this is ``same``.
        positive: For ``outcome`` on a category column, the levels that count as 1.

    Raises:
        DatasetError: a missing target column, a non-numeric target, a single-day dataset for
            ``sf-change``, or too few samples.
    """
    check_task(task)
    target = target or DEFAULT_TARGET[task]
    if task == "severity":
        if source == CLINICAL:
            raise DatasetError("severity is a per-video score; the clinical baseline is per "
                               "patient-day")
        return _severity(folder, source, ds, target)
    table = ds.clinical_table()
    if source == CLINICAL:
        cov = table.covariate_rows()
        if not cov:
            raise DatasetError(f"{table.path}: no column is marked covariate in dataset.json's "
                               "clinical_schema; the clinical baseline has no predictor")
        days: list[dict[str, Any]] = [{"patient": p, "day": d, **v} for (p, d), v in cov.items()]
    else:
        days = read_table(folder.patient_days_csv(source))
    feats = sorted({k for r in days for k in r if k not in _KEYS})
    by_day = {(str(r["patient"]), int(r["day"])): np.array([r.get(k, math.nan) for k in feats],
                                                            dtype=np.float64) for r in days}
    if task == "sf":
        y_map = table.numeric(target)
        keys = [k for k in sorted(by_day) if k in y_map]
        return _table(task, [by_day[k] for k in keys], [y_map[k] for k in keys],
                      [k[0] for k in keys], feats, [f"{p}/day{d}" for p, d in keys])
    if task == "sf-change":
        table.require_two_days(task)
        y_map = table.numeric(target)
        rows, ys, groups, keys = [], [], [], []
        for p, ds_ in sorted(table.days().items()):
            for d0, d1 in itertools.pairwise(ds_):
                a, b = (p, d0), (p, d1)
                if a in by_day and b in by_day and a in y_map and b in y_map:
                    delta = y_map[b] - y_map[a]
                    label = "same" if abs(delta) <= tolerance else ("up" if delta > 0 else "down")
                    rows.append(by_day[b] - by_day[a])
                    ys.append(CHANGE_LABELS.index(label))
                    groups.append(p)
                    keys.append(f"{p}/day{d0}-{d1}")
        return _table(task, rows, ys, groups, [f"delta.{f}" for f in feats], keys,
                      classes=CHANGE_LABELS)
    y_pat = _binary_target(table, target, positive)
    per_patient: dict[str, list[np.ndarray]] = {}
    for (p, _), x in by_day.items():
        per_patient.setdefault(p, []).append(x)
    pats = [p for p in sorted(per_patient) if p in y_pat]
    with warnings.catch_warnings():  # an all-NaN feature stays NaN, quietly
        warnings.simplefilter("ignore", RuntimeWarning)
        rows = [np.nanmean(np.stack(per_patient[p]), axis=0) for p in pats]
    return _table(task, rows, [y_pat[p] for p in pats], pats, feats, pats, classes=("0", "1"))


def _binary_target(table: ClinicalTable, target: str, positive: Sequence[str]
                   ) -> dict[str, int]:
    col = table.schema.column(target)
    if col.kind == "binary" and not positive:
        return table.binary_per_patient(target)
    if col.kind == "category" and positive:
        bad = sorted(set(positive) - set(col.levels)) if col.levels else []
        if bad:
            raise DatasetError(f"--positive {','.join(positive)}: {bad[0]!r} is not a level of "
                               f"{target} ({', '.join(col.levels)})")
        return table.category_per_patient(target, positive)
    if col.kind == "category":
        raise DatasetError(f"{table.path}: outcome target {target!r} is a category; say which "
                           f"levels count as positive, e.g. --positive "
                           f"{','.join(col.levels[:2]) or 'LEVEL'}")
    raise DatasetError(f"{table.path}: outcome target {target!r} is a {col.kind} column; give "
                       "a binary (0/1) column, e.g. --target readmit_30d" if not positive else
                       f"{table.path}: --positive needs a category target; {target!r} is a "
                       f"{col.kind}")


def _severity(folder: DownstreamFolder, source: str, ds: Dataset, target: str) -> TaskTable:
    score = {it.id: it.extra.get(target) for it in ds.items if it.video}
    score = {k: float(v) for k, v in score.items() if isinstance(v, int | float)}
    if not score:
        raise DatasetError(f"{ds.root}: no video item has a numeric {target!r}; the severity "
                           "task needs a per-video score")
    videos = read_table(folder.videos_csv(source))
    feats = sorted({k for r in videos for k in r if k not in _KEYS})
    rows = [r for r in videos if r["video"] in score]
    return _table("severity", [np.array([r.get(k, math.nan) for k in feats], dtype=np.float64)
                               for r in rows],
                  [round(score[r["video"]]) for r in rows], [str(r["patient"]) for r in rows],
                  feats, [str(r["video"]) for r in rows],
                  classes=tuple(str(c) for c in sorted({round(v) for v in score.values()})))


def _table(task: str, rows: list[np.ndarray], ys: list[float], groups: list[str],
           feats: list[str], keys: list[str], *, classes: tuple[str, ...] = ()) -> TaskTable:
    n_groups = len(set(groups))
    if n_groups < 4:
        raise DatasetError(f"task {task}: only {len(rows)} samples from {n_groups} patients; "
                           "patient-grouped cross-validation needs at least 4 patients")
    X = np.stack(rows) if rows else np.zeros((0, len(feats)))
    keep = ~np.all(np.isnan(X), axis=0)  # a feature no sample has (a class nobody predicts)
    return TaskTable(task=task, kind=KINDS[task], X=X[:, keep], y=np.asarray(ys),
                     groups=np.asarray(groups), features=[f for f, k in zip(feats, keep,
                                                                            strict=True) if k],
                     keys=keys, classes=classes)
