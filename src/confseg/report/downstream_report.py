"""A self-contained HTML page for a downstream folder, rendered from its task files.

It never fits a model: the numbers come from every ``tasks/<task>/summary.json`` that
``confseg downstream`` wrote, the figures are drawn here from them and from each task's
``predictions.csv`` (:mod:`confseg.viz.downstream_plots`). :class:`~confseg.runs.DownstreamFolder`
names every file. A task whose files are unreadable still gets its section, saying why.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from jinja2 import Environment, PackageLoader, select_autoescape

from confseg.errors import ConfsegError, DatasetError
from confseg.io.atomic import atomic_write_text
from confseg.report._format import ci as _ci_base
from confseg.report._format import finite as _finite
from confseg.report._format import num as _num
from confseg.report._format import uri as _uri
from confseg.runs import (
    ACQUISITION,
    ANNOTATION,
    CLINICAL,
    PLUS_ACQ,
    RAW,
    DownstreamFolder,
    read_table,
)
from confseg.viz import downstream_plots as plots

BASELINES = (RAW, ANNOTATION, ACQUISITION, CLINICAL, RAW + PLUS_ACQ)
TITLES = {"sf": "S/F ratio per patient-day", "sf-change": "S/F change between consecutive days",
          "outcome": "Patient outcome", "severity": "Expert severity score per video"}
KIND_NOTES = {"regression": "regression", "binary": "binary classification",
              "multiclass": "multiclass classification", "ordinal": "ordinal classification"}
SHORT_NOTES = {RAW: "baseline, no segmentation", ANNOTATION: "oracle",
               ACQUISITION: "control: how the video was recorded",
               CLINICAL: "baseline: clinical covariates"}
SOURCE_NOTES = {RAW: "baseline: image statistics, no segmentation",
                ANNOTATION: "oracle: features of the annotations",
                ACQUISITION: "control: frame count, rate, length and size of each video, no "
                             "pixels",
                CLINICAL: "baseline: the clinical table's covariate columns, no images",
                "<source>+acquisition": "the source with the acquisition columns beside it; "
                                        "compared with acquisition alone, it credits the "
                                        "images only with what they add beyond how they were "
                                        "recorded"}










def _ci(m: dict[str, Any], *, signed: bool = False) -> str:
    return _ci_base(m, signed=signed, missing='[–, –]')


def _band(m: dict[str, Any] | None) -> tuple[float, float, float]:
    """(mean, lo, hi) of an interval dict, NaN where absent."""
    m = m or {}
    mean, lo, hi = (float(m[k]) if _finite(m.get(k)) else math.nan for k in ("mean", "lo", "hi"))
    return mean, lo, hi


def _class_label(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else f"{v:.6g}"


# ----- one task ---------------------------------------------------------------------------
def _swatch(colour: str, hatched: bool) -> str:
    """The CSS background of a source's colour swatch (striped for a baseline)."""
    if hatched:
        return f"background: repeating-linear-gradient(45deg, {colour} 0 2px, #fff 2px 4px)"
    return f"background: {colour}"


def _table(s: dict[str, Any], colours: dict[str, str]) -> dict[str, Any]:
    """Source x metric cells (mean, interval), the best headline value bold."""
    results, head = s.get("results") or {}, s.get("headline")
    sources = [n for n in s.get("sources") or results if n in results]
    metrics = list(dict.fromkeys(m for n in sources for m in results[n].get("metrics") or {}))
    metrics.sort(key=lambda m: m != head)
    heads = [(results[n]["metrics"].get(head) or {}).get("mean") for n in sources]
    finite = [v for v in heads if _finite(v)]
    best = (min(finite) if s.get("lower_is_better") else max(finite)) if finite else None
    rows = []
    for n, hv in zip(sources, heads, strict=True):
        ms = results[n].get("metrics") or {}
        cells = [{"mean": _num((ms.get(m) or {}).get("mean")), "ci": _ci(ms.get(m) or {}),
                  "best": m == head and best is not None and hv == best} for m in metrics]
        rows.append({"source": n, "note": SHORT_NOTES.get(n, ""), "cells": cells,
                     "swatch": _swatch(colours.get(n, "#888"), n in BASELINES),
                     "n_features": results[n].get("n_features", "–")})
    return {"metrics": metrics, "rows": rows}


def _paired(s: dict[str, Any], colours: dict[str, str]) -> dict[str, Any]:
    head = s.get("headline") or ""
    panels: dict[str, dict[str, tuple[float, float, float]]] = {}
    splits: dict[str, dict[str, tuple[float, float, float]]] = {}
    refs = []
    for ref, comps in (s.get("paired") or {}).items():
        rows = []
        for n, d in comps.items():
            m = d.get(head) or {}
            ps = d.get("per_split") or {}
            panels.setdefault(ref, {})[n] = _band(m)
            splits.setdefault(ref, {})[n] = _band(ps)
            excludes = _finite(m.get("lo")) and _finite(m.get("hi")) and (m["lo"] > 0
                                                                          or m["hi"] < 0)
            rows.append({"source": n, "diff": _num(m.get("mean"), signed=True),
                         "ci": _ci(m, signed=True), "excludes": excludes,
                         "n_patients": m.get("n_patients", "–"),
                         "split": _num(ps.get("mean"), signed=True),
                         "split_ci": _ci(ps, signed=True), "n_splits": ps.get("n_splits", "–")})
        refs.append({"reference": ref, "rows": rows})
    fig = (plots.plot_paired(panels, splits, metric=head, colours=colours, order=list(colours))
           if any(panels.values()) else None)
    rows = [r for ref in refs for r in ref["rows"]]
    return {"refs": refs, "fig": _uri(fig), "sentences": s.get("sentences") or [],
            "n_patients": next((r["n_patients"] for r in rows), s.get("n_patients", "–")),
            "n_splits": next((r["n_splits"] for r in rows), "–")}


def _predictions(folder: DownstreamFolder, task: str, s: dict[str, Any],
                 colours: dict[str, str]) -> dict[str, Any]:
    """The kind's figure from ``predictions.csv``: scatter, ROC or confusion matrices."""
    path = folder.task_predictions(task)
    kind = s.get("kind")
    try:
        rows = read_table(path, text=("sample", "patient"))
    except (OSError, ValueError) as exc:
        return {"fig": None, "why": f"{path.name} could not be read ({exc})"}
    sources = [n for n in s.get("sources") or [] if rows and n in rows[0]]
    if not rows or not sources:
        return {"fig": None, "why": f"{path.name} holds no predictions"}
    y = np.array([r["y"] for r in rows], dtype=np.float64)

    def col(name: str) -> np.ndarray:
        return np.array([r.get(name, math.nan) for r in rows], dtype=np.float64)

    if kind == "regression":
        label = s.get("target") or ("S/F" if task == "sf" else "value")
        fig = plots.plot_scatter(y, {n: col(n) for n in sources}, colours=colours,
                                 baselines=BASELINES, label=label)
        return {"fig": _uri(fig), "title": "Predicted against true",
                "note": "Repeat-averaged out-of-fold prediction of every sample; dashed: "
                        "the identity line."}
    if kind == "binary":
        scored = [n for n in sources if f"{n}.p_1" in rows[0]]
        if not scored:
            return {"fig": None, "why": f"{path.name} has no probability columns "
                                        "(<source>.p_1); run `confseg downstream` again"}
        fig = plots.plot_roc(y, {n: col(f"{n}.p_1") for n in scored}, colours=colours,
                             baselines=BASELINES)
        return {"fig": _uri(fig), "title": "ROC curves",
                "note": "From the repeat-averaged out-of-fold probability of class 1; "
                        "baselines dashed."}
    classes = list(s.get("classes") or [])
    labels = sorted({*y.tolist(), *(v for n in sources for v in col(n).tolist()
                                    if math.isfinite(v))})
    names = [classes[int(v)] if kind == "multiclass" and float(v).is_integer()
             and 0 <= v < len(classes) else _class_label(v) for v in labels]
    fig = plots.plot_confusion(y, {n: col(n) for n in sources}, labels=labels, names=names,
                               colours=colours)
    return {"fig": _uri(fig), "title": "Confusion matrices",
            "note": "Counts of true (rows) against predicted (columns) classes; the shade is "
                    "the share of the true class."}


def _task(folder: DownstreamFolder, task: str, s: dict[str, Any] | str,
          colours: dict[str, str]) -> dict[str, Any]:
    """One task's section; ``s`` is its summary, or why it could not be read."""
    title = task
    if isinstance(s, dict):
        title = TITLES.get(str(s.get("task")), task)
        if s.get("name", task) != s.get("task"):
            title += f": {s.get('target')}"
            if s.get("positive"):
                title += f" in {{{', '.join(s['positive'])}}}"
    base = {"task": task, "title": title}
    if isinstance(s, str):
        return {**base, "error": s}
    head = s.get("headline") or ""
    results = s.get("results") or {}
    sources = [n for n in s.get("sources") or results if n in results]
    bars = {n: _band((results[n].get("metrics") or {}).get(head)) for n in sources}
    return {**base, "error": None, "s": s, "kind_note": KIND_NOTES.get(s.get("kind"), ""),
            "table": _table(s, colours), "paired": _paired(s, colours),
            "bars": _uri(plots.plot_headline(bars, metric=head, colours=colours,
                                             baselines=BASELINES,
                                             lower_is_better=bool(s.get("lower_is_better"))))
            if bars else None,
            "preds": _predictions(folder, task, s, colours)}


def _notes(sources: Sequence[str]) -> dict[str, str]:
    """The notes of the baselines on the page (``raw`` always)."""
    present = {RAW, *sources}
    if any(n.endswith(PLUS_ACQ) for n in sources):
        present.add("<source>+acquisition")
    return {k: v for k, v in SOURCE_NOTES.items() if k in present}


def _task_rank(name: str, order: Sequence[str]) -> int:
    """Where ``name`` (``<task>`` or ``<task>-<target>``) sorts: by its task's place."""
    tasks = [t for t in order if name == t or name.startswith(t + "-")]
    return order.index(max(tasks, key=len)) if tasks else len(order)


# ----- the page ---------------------------------------------------------------------------
def _sources(summaries: Sequence[dict[str, Any]]) -> list[str]:
    """Every source in first-seen order, the baselines first."""
    seen = list(dict.fromkeys(n for s in summaries for n in s.get("sources") or []))
    return [n for n in BASELINES if n in seen] + [n for n in seen if n not in BASELINES]


def _segmenters(info: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for name, seg in (info.get("segmenters") or {}).items():
        seen = seg.get("seen_in_training") or []
        out.append({"name": name, "source": seg.get("source", ""),
                    "out_of_fold": bool(seg.get("out_of_fold")), "seen": len(seen)})
    return out


def write_downstream_report(folder: str | os.PathLike[str] | DownstreamFolder,
                            out: str | os.PathLike[str] | None = None) -> Path:
    """Render ``<folder>/report.html`` (or ``out``) from every ``tasks/*/summary.json``.

    Args:
        folder: The downstream folder (or its :class:`~confseg.runs.DownstreamFolder`).
        out: Where to write the page; default the folder's ``report.html``.

    Returns:
        The path written.

    Raises:
        DatasetError: the folder does not exist.
    """
    folder = folder if isinstance(folder, DownstreamFolder) else DownstreamFolder(folder)
    if not folder.root.is_dir():
        raise DatasetError(f"{folder.root}: downstream folder not found")
    out = Path(out) if out else folder.report_path
    try:
        info, info_error = folder.read_segment(), None
    except ConfsegError as exc:
        info, info_error = {}, str(exc)
    loaded: dict[str, dict[str, Any] | str] = {}
    order = list(TITLES)
    for t in sorted(folder.evaluated_tasks(), key=lambda t: (_task_rank(t, order), t)):
        try:
            loaded[t] = folder.read_task_summary(t)
        except ConfsegError as exc:
            loaded[t] = str(exc)
    summaries = [s for s in loaded.values() if isinstance(s, dict)]
    colours = plots.source_colours(_sources(summaries), BASELINES)
    tasks = [_task(folder, t, s, colours) for t, s in loaded.items()]
    datasets = list(dict.fromkeys(str(s.get("dataset")) for s in summaries if s.get("dataset")))
    intervals = list(dict.fromkeys(s["interval"] for s in summaries if s.get("interval")))
    env = Environment(loader=PackageLoader("confseg.report", "templates"),
                      autoescape=select_autoescape(["html"]))
    html = env.get_template("downstream.html").render(
        name=folder.root.name, root=str(folder.root), tasks=tasks, info=info,
        datasets=datasets or ([info["dataset"]] if info.get("dataset") else []),
        intervals=intervals, segmenters=_segmenters(info), notes=_notes(_sources(summaries)),
        info_error=info_error,
    )
    atomic_write_text(out, html)
    return out
