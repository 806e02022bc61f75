"""``confseg downstream``: one task, every feature source, identical splits, paired differences.

Sources: ``raw`` (image statistics of the frames, no segmentation: what a user has without
confseg), ``annotation`` (features of the annotations, the oracle, where the dataset has
them), ``acquisition`` (frame count, rate, length and size: how the video was recorded),
``clinical`` (the clinical table's covariate columns, where it marks some), and each
segmenter (a run, or each strategy of a study). ``<source>+acquisition`` adds the
acquisition columns to raw and to every segmenter: compared with ``acquisition`` alone, it
credits the images only with what they add beyond how they were recorded (left out when
every video was recorded alike: then it equals the source). Every source is
evaluated on the same samples (the keys all sources have) and the same seeded splits;
paired differences use the same patient draws.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from confseg.data import load_dataset
from confseg.downstream.evaluate import (
    HEADLINE,
    LOWER_IS_BETTER,
    bootstrap,
    nested_cv,
    select_nested,
)
from confseg.downstream.folder import (
    ACQUISITION,
    ANNOTATION,
    CLINICAL,
    PLUS_ACQ,
    RAW,
    DownstreamFolder,
    write_table,
)
from confseg.downstream.tasks import (
    DEFAULT_TARGET,
    TaskTable,
    check_task,
    task_table,
)
from confseg.errors import DatasetError

#: Paired references, the first present wins the headline comparison.
REFERENCES = ("threshold-0", "threshold-0.5", RAW, ACQUISITION)


def _common(tables: dict[str, TaskTable]) -> dict[str, TaskTable]:
    """Restrict every source to the samples they all have (same order)."""
    keys = set.intersection(*(set(t.keys) for t in tables.values()))
    out = {}
    for name, t in tables.items():
        idx = [i for i, k in enumerate(t.keys) if k in keys]
        idx.sort(key=lambda i: t.keys[i])
        out[name] = TaskTable(task=t.task, kind=t.kind, X=t.X[idx], y=t.y[idx],
                              groups=t.groups[idx], features=t.features,
                              keys=[t.keys[i] for i in idx], classes=t.classes)
    return out


def _plus(a: TaskTable, b: TaskTable) -> TaskTable:
    """``a`` with ``b``'s columns beside it (both already on the same samples)."""
    return TaskTable(task=a.task, kind=a.kind, X=np.hstack([a.X, b.X]), y=a.y, groups=a.groups,
                     features=a.features + b.features, keys=a.keys, classes=a.classes)


def _varies(t: TaskTable) -> bool:
    """Whether any column of ``t`` takes two values (NaN aside)."""
    with np.errstate(all="ignore"):
        return bool(np.any(np.nanmax(t.X, axis=0) > np.nanmin(t.X, axis=0))) if len(t.y) else False


def _compared(ref: str, names: Sequence[str]) -> list[str]:
    """Who is compared with ``ref``: ``X+acquisition`` with acquisition, the rest otherwise."""
    if ref == ACQUISITION:
        return [n for n in names if n.endswith(PLUS_ACQ)]
    return [n for n in names if n != ref and not n.endswith(PLUS_ACQ)]


def run_downstream(data: str | os.PathLike[str], out: str | os.PathLike[str], *, task: str,
                   segmenters: Sequence[str | os.PathLike[str]] = (), target: str | None = None,
                   tolerance: float = 15.0, estimator: str = "linear", repeats: int = 5,
                   folds: int = 5, every: int = 1, max_frames: int | None = None,
                   skip_bad: bool = False, n_boot: int = 500, seed: int = 0,
                   positive: Sequence[str] = ()) -> dict[str, Any]:
    """Evaluate ``task`` on every feature source; write ``tasks/<name>/``.

    ``<name>`` is :func:`analysis_name`.

    Segmenters not yet in ``out`` are segmented first (cached per video).

    Returns:
        The ``tasks/<name>/summary.json`` object.
    """
    check_task(task)
    if positive and task != "outcome":
        raise DatasetError(f"--positive is for --task outcome, not {task}")
    name = analysis_name(task, target)
    ds = load_dataset(data)
    folder = DownstreamFolder(out)
    t0 = time.perf_counter()
    if segmenters:  # segmenting loads the models (torch); evaluating cached features does not
        from confseg.downstream.segment import segment_videos
    for seg in segmenters:
        segment_videos(seg, ds.root, out, every=every, max_frames=max_frames, skip_bad=skip_bad)
    info = folder.read_segment()
    if not info:
        raise DatasetError(f"{out}: no segmented videos; give --segmenters RUN_OR_STUDY (or "
                           "run `confseg segment-videos` into this folder first)")
    segs = list(info["segmenters"])
    names = [RAW] + [n for n in (ANNOTATION, ACQUISITION)
                     if folder.patient_days_csv(n).is_file()]
    if task != "severity" and ds.clinical_table().covariates:
        names.append(CLINICAL)
    names += segs
    tables = _common({n: task_table(task, folder, n, ds, target=target, tolerance=tolerance,
                                    positive=positive) for n in names})
    acq = tables.get(ACQUISITION)
    if acq is not None and _varies(acq):  # constant acquisition adds nothing to a source
        for n in [RAW, *segs]:
            tables[n + PLUS_ACQ] = _plus(tables[n], tables[ACQUISITION])
            names.append(n + PLUS_ACQ)
    first = tables[names[0]]
    results: dict[str, Any] = {}
    fits = {}
    for n in names:
        fits[n] = nested_cv(tables[n], estimator=estimator, repeats=repeats, folds=folds,
                            seed=seed)
        results[n] = {"metrics": bootstrap(first.kind, first.y, first.groups, fits[n],
                                           n_boot=n_boot, seed=seed),
                      "mean_over_repeats": fits[n]["metrics"],
                      "n_features": len(tables[n].features)}
    headline = HEADLINE[first.kind]
    selection = None
    if len(segs) > 1:  # choose the strategy by its downstream value, nested
        sel = select_nested({n: fits[n] for n in segs})
        selection = {"metrics": bootstrap(first.kind, first.y, first.groups, sel,
                                          n_boot=n_boot, seed=seed),
                     "chosen": sel["chosen"],
                     "rule": "per outer split, the segmenter with the best inner-CV score"}
    refs = [r for r in REFERENCES if r in fits]
    paired: dict[str, Any] = {}
    for ref in refs:
        paired[ref] = {}
        for n in _compared(ref, names):
            diff = bootstrap(first.kind, first.y, first.groups, fits[n], other=fits[ref],
                             n_boot=n_boot, seed=seed)
            splits = [a[headline] - b[headline] for a, b in zip(
                fits[n]["split_metrics"], fits[ref]["split_metrics"], strict=True)]
            paired[ref][n] = {**diff, "per_split": {
                "mean": float(np.nanmean(splits)), "lo": float(np.nanquantile(splits, 0.025)),
                "hi": float(np.nanquantile(splits, 0.975)), "n_splits": len(splits)}}
    summary = {
        "task": task, "name": name, "kind": first.kind, "target": target or None,
        "positive": list(positive) or None, "dataset": str(ds.root),
        "estimator": estimator, "repeats": repeats, "folds": folds, "seed": seed,
        "n_samples": len(first.y), "n_patients": len(set(first.groups)),
        "headline": headline, "lower_is_better": headline in LOWER_IS_BETTER,
        "classes": list(first.classes), "sources": names, "results": results,
        "paired": paired, "sentences": _sentences(names, results, paired, headline),
        "selection": selection,
        "seconds": round(time.perf_counter() - t0, 1),
        "interval": "95% patient bootstrap of the repeat-averaged out-of-fold predictions",
    }
    folder.task_dir(name).mkdir(parents=True, exist_ok=True)
    write_table(folder.task_predictions(name), _prediction_rows(first, names, fits))
    folder.write_task_summary(name, summary)
    return summary


def analysis_name(task: str, target: str | None) -> str:
    """The folder of a task under ``tasks/``.

    ``<task>``, or ``<task>-<target>`` for another target than the task's default, so that
    two outcomes do not overwrite each other.
    """
    return task if not target or target == DEFAULT_TARGET[task] else f"{task}-{target}"


def _class_label(c: Any) -> str:
    """A class value as the ``y`` column writes it (``1``, not ``1.0``)."""
    f = float(c)
    return str(int(f)) if f.is_integer() else f"{f:.6g}"


def _prediction_rows(first: TaskTable, names: list[str], fits: dict[str, Any]
                     ) -> list[dict[str, Any]]:
    """The rows of ``predictions.csv``.

    Columns: sample, patient, y, each source's prediction and, for classification, its
    repeat-averaged probability per class (``<source>.p_<class>``, classes as ``y`` holds them).
    """
    reg = first.kind == "regression"
    classes = [] if reg else [_class_label(c) for c in np.unique(first.y)]
    rows = []
    for i, key in enumerate(first.keys):
        row: dict[str, Any] = {"sample": key, "patient": first.groups[i], "y": first.y[i]}
        for n in names:
            row[n] = fits[n]["pred"][i]
        for n in names:
            proba = fits[n]["proba"]
            if proba is not None:
                for j, c in enumerate(classes):
                    row[f"{n}.p_{c}"] = float(proba[i, j])
        rows.append(row)
    return rows


def _sentences(names: list[str], results: dict[str, Any], paired: dict[str, Any],
               headline: str) -> list[str]:
    out = []
    for ref, comps in paired.items():
        for n, d in comps.items():
            m = d[headline]
            if not math.isfinite(m["lo"]):
                continue
            if m["lo"] > 0 or m["hi"] < 0:
                out.append(f"{n} vs {ref}: {headline} differs by {m['mean']:+.3f} "
                           f"[{m['lo']:+.3f}, {m['hi']:+.3f}].")
            else:
                out.append(f"{n} and {ref} are not distinguishable on {headline} "
                           f"({m['mean']:+.3f} [{m['lo']:+.3f}, {m['hi']:+.3f}] includes 0).")
    return out
