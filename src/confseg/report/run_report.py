"""A self-contained HTML page for one run, rendered from its folder's files.

It never runs a model: the figures (progress, reliability, example overlays) were written by
training and evaluation (:mod:`confseg.runs` names them).
"""

from __future__ import annotations

import base64
import os
from pathlib import Path

from jinja2 import Environment, PackageLoader, select_autoescape

from confseg.io.atomic import atomic_write_text
from confseg.metrics.segmentation import HEADLINE
from confseg.runs import RunFolder


def _png_data_uri(path: Path) -> str | None:
    if not path.exists():
        return None
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()


def write_run_report(run: str | os.PathLike[str] | RunFolder,
                     out: str | os.PathLike[str] | None = None) -> Path:
    """Render ``run/report.html`` (or ``out``) from the files of an evaluated run."""
    folder = (run if isinstance(run, RunFolder) else RunFolder(run)).require()
    out = Path(out) if out else folder.report_path
    cfg = folder.config.to_dict()
    summary = folder.summary()
    status = folder.read_status()
    classes = list(summary["classes"])
    rows = []
    for key, label in HEADLINE.items():
        if not any(key in summary["classes"][c] for c in classes):
            continue
        cells = []
        for c in classes:
            m = summary["classes"][c].get(key)
            cells.append("–" if m is None or m["mean"] != m["mean"] else
                         f"{m['mean']:.3f} <small>[{m['lo']:.3f}, {m['hi']:.3f}]</small>")
        rows.append({"label": label, "cells": cells})
    ex = summary.get("examples") or {}
    examples = [{"id": i, "label": _png_data_uri(folder.example_png(i, "label")),
                 "pred": _png_data_uri(folder.example_png(i, "pred"))}
                for i in ex.get("ids", [])]
    env = Environment(loader=PackageLoader("confseg.report", "templates"),
                      autoescape=select_autoescape(["html"]))
    html = env.get_template("run.html").render(
        run=folder.root.name, cfg=cfg, summary=summary, status=status, classes=classes,
        rows=rows, progress=_png_data_uri(folder.progress_png),
        reliability=[(c, _png_data_uri(folder.reliability_png(c))) for c in classes],
        examples=[e for e in examples if e["label"] and e["pred"]],
        examples_model=ex.get("model", ""),
    )
    atomic_write_text(out, html)
    return out
