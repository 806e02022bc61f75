"""A self-contained HTML page for one study, rendered from its folder's files.

It never runs a model: the numbers come from ``results/*.json`` (written by the study's
collect step), the figures are drawn here from them and from the cells' ``metrics.csv``
(:mod:`confseg.viz.study_plots`), and the example overlays were written by collect.
:class:`~confseg.runs.StudyFolder` names every file. A study whose results are not collected
yet, or whose dataset folder is gone, still renders: the page says what is missing.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape

from confseg.errors import ConfsegError
from confseg.io.atomic import atomic_write_text
from confseg.metrics.calibration import curve_from_bins
from confseg.metrics.segmentation import HEADLINE
from confseg.report._format import ci as _ci_base
from confseg.report._format import file_uri as _file_uri
from confseg.report._format import finite as _finite
from confseg.report._format import num as _num
from confseg.report._format import uri as _uri
from confseg.runs import StudyFolder, strategy_slug
from confseg.viz import study_plots
from confseg.viz.plots import read_epoch_metrics

_slug = strategy_slug












def _ci(m: dict[str, Any], *, signed: bool = False) -> str:
    return _ci_base(m, signed=signed)


def _p(v: Any) -> str:
    return "–" if not _finite(v) else "<0.001" if v < 1e-3 else f"{v:.3f}"


def _level_label(level: str) -> str:
    return "any mark" if level == "any" else f"≥{round(float(level) * 100)}%"


def metric_label(metric: str) -> str:
    """The reader's name of a summary metric (``dice@0.4`` -> ``Dice vs label ≥40%``)."""
    if metric in HEADLINE:
        return HEADLINE[metric]
    if metric.startswith("dice@"):
        return f"Dice vs label {_level_label(metric.split('@', 1)[1])}"
    return metric


def _read(study: StudyFolder, path: Path) -> tuple[dict[str, Any], str | None]:
    """A results file, or ({}, why not)."""
    try:
        return study.read_json(path), None
    except ConfsegError as exc:
        return {}, str(exc)


# ----- sections -----------------------------------------------------------------------------
def _summary(summary: dict[str, Any]) -> dict[str, Any]:
    metrics = summary.get("metrics") or []
    head = metrics[0] if metrics else None
    best = summary.get("best") or {}
    return {
        "headline": head, "headline_label": metric_label(head) if head else "",
        "lower": head in (summary.get("lower_is_better") or []),
        "sentences": [best[c][head]["sentence"] for c in summary.get("classes", [])
                      if head and head in best.get(c, {})],
        "missing": summary.get("missing") or [],
    }


def _dataset(spec: dict[str, Any]) -> dict[str, Any]:
    """The dataset's counts, levels and raters per class, or why they are unavailable."""
    from confseg.data import load_dataset
    from confseg.data.info import dataset_info

    root = str(spec.get("data", ""))
    if not root or not Path(root).is_dir():
        return {"root": root, "error": f"the dataset folder {root or '(none)'} no longer "
                                       "exists; its description is left out"}
    try:
        ds = load_dataset(root, validate=False)
        info = dataset_info(ds)
    except (ConfsegError, OSError, ValueError) as exc:
        return {"root": root, "error": f"the dataset could not be read: {exc}"}
    scale = info.get("confidence_scale") or []
    classes = []
    for cls, c in info["classes"].items():
        hist = c.get("histogram") or {}
        total = sum(hist.values()) or 1
        raters = sorted({r for it in ds.items for r, m in it.raters.items() if cls in m})
        classes.append({
            "name": cls, "marked": c["marked_items"],
            "fraction": f"{100 * c['marked_fraction']:.2f}%",
            "shares": [f"{100 * hist.get(str(lv), 0) / total:.0f}%" for lv in scale],
            "raters": raters,
        })
    return {**info, "scale": scale, "class_rows": classes, "error": None}


def _tables(summary: dict[str, Any]) -> dict[str, Any]:
    metrics, lower = summary.get("metrics") or [], summary.get("lower_is_better") or []
    table, best = summary.get("table") or {}, summary.get("best") or {}
    out = []
    for cls in summary.get("classes") or []:
        rows = []
        for s in summary.get("strategies") or []:
            cells = []
            for m in metrics:
                v = table.get(s, {}).get(cls, {}).get(m) or {}
                b = best.get(cls, {}).get(m) or {}
                top = b.get("strategy") == s and _finite(v.get("mean"))
                cells.append({"mean": _num(v.get("mean")), "ci": _ci(v), "best": top,
                              "distinct": top and b.get("distinguishable")})
            rows.append({"strategy": s, "cells": cells})
        out.append({"cls": cls, "rows": rows})
    return {"headers": [{"label": metric_label(m), "lower": m in lower} for m in metrics],
            "classes": out}


def _levels(summary: dict[str, Any], colours: dict[str, str]) -> str | None:
    levels = summary.get("levels") or {}
    strategies, classes = summary.get("strategies") or [], summary.get("classes") or []
    names = list(dict.fromkeys(lv for s in levels.values() for c in s.values() for lv in c))
    if not names:
        return None
    curves = {}
    for cls in classes:
        curves[cls] = {}
        for s in strategies:
            by = levels.get(s, {}).get(cls, {})
            band = [[(by.get(lv) or {}).get(k, math.nan) for lv in names]
                    for k in ("mean", "lo", "hi")]
            curves[cls][s] = (band[0], band[1], band[2])
    return _uri(study_plots.plot_level_curves([_level_label(lv) for lv in names], curves,
                                              colours=colours))


def _forest(summary: dict[str, Any], paired: dict[str, Any], colours: dict[str, str]
            ) -> list[dict[str, Any]]:
    metrics = summary.get("metrics") or []
    shown = list(dict.fromkeys(m for m in [*metrics[:1], "qubiq"] if m in metrics))
    lower = summary.get("lower_is_better") or []
    out = []
    for ref in paired.get("references") or []:
        comp = (paired.get("comparisons") or {}).get(ref) or {}
        for m in shown:
            panels: dict[str, dict[str, tuple[float, float, float]]] = {}
            rows = []
            for cls in summary.get("classes") or []:
                for s, by_cls in comp.items():
                    d = (by_cls.get(cls) or {}).get(m)
                    if not d:
                        continue
                    panels.setdefault(cls, {})[s] = (d["mean"], d["lo"], d["hi"])
                    excludes = _finite(d.get("lo")) and (d["lo"] > 0 or d["hi"] < 0)
                    rows.append({"cls": cls, "strategy": s, "diff": _num(d["mean"], signed=True),
                                 "ci": _ci(d, signed=True), "p": _p(d.get("wilcoxon_p")),
                                 "p_holm": _p(d.get("p_holm")),
                                 "effect": _num(d.get("effect_size"), signed=True),
                                 "excludes": excludes})
            if not panels:
                continue
            label = metric_label(m)
            better = "lower" if m in lower else "higher"
            fig = study_plots.plot_forest(panels, colours=colours,
                                          xlabel=f"difference to {ref}")
            out.append({"reference": ref, "metric": m, "label": label, "better": better,
                        "fig": _uri(fig), "rows": rows})
    return out


def _calibration(summary: dict[str, Any], reliability: dict[str, Any],
                 colours: dict[str, str]) -> dict[str, Any]:
    table, classes = summary.get("table") or {}, summary.get("classes") or []
    metrics = [m for m in ("qubiq", "ece") if m in (summary.get("metrics") or [])]
    rows = []
    for s in summary.get("strategies") or []:
        cells = []
        for cls in classes:
            for m in metrics:
                v = table.get(s, {}).get(cls, {}).get(m) or {}
                cells.append({"mean": _num(v.get("mean")), "ci": _ci(v)})
        rows.append({"strategy": s, "cells": cells})
    curves: dict[str, dict[str, Any]] = {}
    for cls in classes:
        for s in summary.get("strategies") or []:
            bins = (reliability.get(s) or {}).get(cls)
            if bins and bins.get("count"):
                curves.setdefault(cls, {})[s] = curve_from_bins(bins)
    fig = study_plots.plot_reliability_grid(curves, colours=colours) if curves else None
    return {"metrics": [metric_label(m) for m in metrics], "classes": classes, "rows": rows,
            "fig": _uri(fig)}


def _examples(study: StudyFolder, summary: dict[str, Any]) -> dict[str, Any]:
    strategies = summary.get("strategies") or []
    rows = []
    for ex in summary.get("examples") or []:
        preds = ex.get("predictions") or {}
        images = [_file_uri(study.example_png(ex["id"], "image")),
                  _file_uri(study.example_png(ex["id"], "label"))]
        images += [_file_uri(study.example_png(ex["id"], preds[s])) if preds.get(s) else None
                   for s in strategies]  # a strategy whose cell failed has no prediction
        score = ex.get("mean_score")
        rows.append({**ex, "images": images,
                     "score": f"{metric_label(ex.get('metric', ''))} {_num(score)}"
                              if _finite(score) else ""})
    metric = rows[0].get("metric", "") if rows else ""
    return {"columns": ["image", "annotator confidence", *strategies], "rows": rows,
            "metric": metric_label(metric)}


def _cells(spec: dict[str, Any]) -> list[tuple[str, int, int]]:
    return [(s, f, seed) for s in spec.get("strategies") or []
            for f in range(int(spec.get("k") or 0)) for seed in range(int(spec.get("seeds") or 1))]


def _curves(study: StudyFolder, spec: dict[str, Any]) -> tuple[str | None, int]:
    curves: dict[str, dict[str, Any]] = {}
    n = 0
    for s, f, seed in _cells(spec):
        m = read_epoch_metrics(study.cell(_slug(s), f, seed).metrics_csv)
        if m:
            curves.setdefault(s, {})[f"fold {f} seed {seed}"] = m
            n += 1
    return (_uri(study_plots.plot_training_grid(curves)) if curves else None), n


def _duration(seconds: Any) -> str:
    if not _finite(seconds):
        return "–"
    m, s = divmod(round(float(seconds)), 60)
    h, m = divmod(m, 60)
    return f"{h} h {m:02d} min" if h else f"{m} min {s:02d} s" if m else f"{s} s"


def _reproduce(study: StudyFolder, spec: dict[str, Any], status: dict[str, Any],
               summary: dict[str, Any]) -> dict[str, Any]:
    run = spec.get("run") or {}
    cell_status: dict[str, Any] = {}
    for s, f, seed in _cells(spec):
        cell_status = study.cell(_slug(s), f, seed).read_status()
        if cell_status:
            break
    versions = {"confseg": run.get("confseg"), "python": run.get("python"),
                **{k: cell_status.get(k) for k in ("torch", "lightning", "precision",
                                                   "machine")}}
    missing = [str(m.get("cell", "")) for m in summary.get("missing") or []]
    per_strategy = len(_cells({**spec, "strategies": ["x"]}))
    seconds = []
    for s, total in (summary.get("cell_seconds") or {}).items():
        done = per_strategy - sum(1 for c in missing if c.startswith(_slug(s) + "/"))
        seconds.append({"strategy": s, "total": _duration(total), "cells": done,
                        "mean": _duration(total / done) if done else "–"})
    setup = {k: spec.get(k) for k in ("k", "seeds", "split_seed", "references", "compare",
                                      "n_boot")}
    return {"command": run.get("command"), "cwd": run.get("cwd"), "created": run.get("created"),
            "versions": {k: v for k, v in versions.items() if v},
            "wall": _duration(status.get("wall_seconds")), "seconds": seconds,
            "base": spec.get("base") or {}, "setup": setup}


def write_study_report(folder: str | os.PathLike[str] | StudyFolder,
                       out: str | os.PathLike[str] | None = None) -> Path:
    """Render ``<study>/report.html`` (or ``out``) from the files of a study folder.

    Args:
        folder: The study folder (or its :class:`~confseg.runs.StudyFolder`).
        out: Where to write the page; default the study's ``report.html``.

    Returns:
        The path written.

    Raises:
        RunError: the folder is not a study folder or its ``study.yaml`` is unreadable.
    """
    study = (folder if isinstance(folder, StudyFolder) else StudyFolder(folder)).require()
    out = Path(out) if out else study.report_path
    spec, status = study.read_spec(), study.read_status()
    summary, why = _read(study, study.summary_path)
    paired, _ = _read(study, study.paired_path) if summary else ({}, None)
    reliability, _ = _read(study, study.reliability_path) if summary else ({}, None)
    strategies = summary.get("strategies") or spec.get("strategies") or []
    colours = study_plots.strategy_colours(list(spec.get("strategies") or strategies))
    curves, n_curves = _curves(study, spec)
    env = Environment(loader=PackageLoader("confseg.report", "templates"),
                      autoescape=select_autoescape(["html"]))
    html = env.get_template("study.html").render(
        name=study.root.name, spec=spec, status=status, s=summary, no_results=why,
        strategies=strategies, head=_summary(summary), dataset=_dataset(spec),
        tables=_tables(summary), levels=_levels(summary, colours) if summary else None,
        forest=_forest(summary, paired, colours), paired=paired,
        calibration=_calibration(summary, reliability, colours),
        examples=_examples(study, summary), curves=curves, n_curves=n_curves,
        n_cells=len(_cells(spec)), reproduce=_reproduce(study, spec, status, summary),
    )
    atomic_write_text(out, html)
    return out
