"""The downstream report: rendered from a downstream folder's task files (built here, no fit)."""

from __future__ import annotations

import base64
import io
import json
import math
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from confseg.downstream.run import _prediction_rows
from confseg.downstream.tasks import TaskTable
from confseg.report.downstream_report import write_downstream_report
from confseg.runs import DownstreamFolder, read_table, write_table
from confseg.viz.downstream_plots import roc_points

SOURCES = ["raw", "annotation", "threshold-0", "threshold-0.6", "soft"]
REFS = ["threshold-0", "raw"]
METRICS = {"regression": ("mae", "rmse", "pearson_r"),
           "binary": ("accuracy", "auc", "balanced_accuracy", "f1"),
           "multiclass": ("accuracy", "macro_f1", "auc_ovr"), "ordinal": ("accuracy", "qwk")}
HEADLINE = {"regression": "mae", "binary": "auc", "multiclass": "macro_f1", "ordinal": "qwk"}
TASKS = {"sf": ("regression", ()), "sf-change": ("multiclass", ("down", "same", "up")),
         "outcome": ("binary", ("0", "1")), "severity": ("ordinal", ("1", "2", "3"))}
N_PAT = 8


def _iv(mean: float, n: int = N_PAT) -> dict[str, float]:
    return {"mean": mean, "lo": mean - 0.1, "hi": mean + 0.1, "n_patients": n}


def _summary(task: str, rng: np.random.Generator, n_samples: int) -> dict[str, Any]:
    """A ``tasks/<task>/summary.json`` with the keys ``run_downstream`` writes."""
    kind, classes = TASKS[task]
    head = HEADLINE[kind]
    results = {}
    for i, n in enumerate(SOURCES):
        metrics = {m: _iv(float(rng.uniform(0.2, 0.9))) for m in METRICS[kind]}
        if task == "sf":
            metrics["mae"] = _iv(40.0 + 5 * i)  # raw is the best (lowest) on the headline
        results[n] = {"metrics": metrics,
                      "mean_over_repeats": {m: v["mean"] for m, v in metrics.items()},
                      "n_features": 10 + i}
    nan = {"mean": math.nan, "lo": math.nan, "hi": math.nan, "n_patients": N_PAT}
    if task == "sf":
        results["soft"]["metrics"]["pearson_r"] = nan  # constant predictions: NaN in the JSON
    if task == "outcome":
        results["annotation"]["metrics"]["auc"] = nan
    paired = {ref: {n: {**{m: _iv(float(rng.uniform(-0.2, 0.2))) for m in METRICS[kind]},
                        "per_split": {"mean": 0.01, "lo": -0.2, "hi": 0.3, "n_splits": 6}}
                    for n in SOURCES if n != ref} for ref in REFS}
    return {
        "task": task, "kind": kind, "target": None, "dataset": "/data/syn",
        "estimator": "linear", "repeats": 2, "folds": 3, "seed": 0,
        "n_samples": n_samples, "n_patients": N_PAT, "headline": head,
        "lower_is_better": head in ("mae", "rmse"), "classes": list(classes),
        "sources": SOURCES, "results": results, "paired": paired,
        "sentences": [f"soft vs threshold-0: {head} differs by +0.100 [+0.010, +0.190]."],
        "seconds": 1.0,
        "interval": "95% patient bootstrap of the repeat-averaged out-of-fold predictions",
    }


def _predictions(task: str, rng: np.random.Generator) -> tuple[TaskTable, dict[str, Any]]:
    """A task table and per-source fits shaped like ``nested_cv``'s results."""
    kind, classes = TASKS[task]
    n = 2 * N_PAT if task == "sf" else N_PAT
    groups = np.array([f"p{i % N_PAT:03d}" for i in range(n)])
    y = rng.uniform(150, 480, n) if kind == "regression" else np.arange(n) % len(classes)
    if kind == "ordinal":
        y = y + 1  # scores 1..3: the class values, not indices
    fits = {}
    for s in SOURCES:
        if kind == "regression":
            fits[s] = {"pred": y + rng.normal(0, 40, n), "proba": None}
        else:
            proba = rng.dirichlet(np.ones(len(classes)), n)
            fits[s] = {"pred": np.unique(y)[np.argmax(proba, axis=1)], "proba": proba}
    table = TaskTable(task=task, kind=kind, X=np.zeros((n, 1)), y=y, groups=groups,
                      features=["f"], keys=[f"{g}/s{i}" for i, g in enumerate(groups)],
                      classes=classes)
    return table, fits


def make_folder(root: Path, tasks: tuple[str, ...] = tuple(TASKS)) -> DownstreamFolder:
    folder = DownstreamFolder(root)
    root.mkdir(parents=True, exist_ok=True)
    folder.write_segment({"dataset": "/data/syn", "sampling": {"every": 1, "max_frames": 2},
                          "videos": 32, "segmenters": {"threshold-0": {
                              "source": "studies/s", "out_of_fold": True,
                              "seen_in_training": []}}, "skipped": {}})
    rng = np.random.default_rng(0)
    for task in tasks:
        table, fits = _predictions(task, rng)
        folder.task_dir(task).mkdir(parents=True, exist_ok=True)
        write_table(folder.task_predictions(task), _prediction_rows(table, SOURCES, fits))
        folder.write_task_summary(task, _summary(task, rng, len(table.y)))
    return folder


def _check_page(html: str, sections: list[str]) -> None:
    assert re.findall(r'<section id="([^"]+)"', html) == sections
    assert "http://" not in html and "https://" not in html
    assert "<script" not in html and "<link" not in html
    for src in re.findall(r'<img[^>]*\ssrc="([^"]*)"', html):
        assert src.startswith("data:image/png;base64,")
        with Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))) as im:
            assert im.format == "PNG"
            im.verify()


def _section(html: str, sid: str) -> str:
    return html.split(f'<section id="{sid}">', 1)[1].split("</section>", 1)[0]


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> DownstreamFolder:
    return make_folder(tmp_path_factory.mktemp("dr") / "down")


def test_report_renders_every_task_self_contained(folder):
    out = write_downstream_report(folder.root)
    assert out == folder.report_path
    html = out.read_text(encoding="utf-8")
    _check_page(html, ["summary", "task-sf", "task-sf-change", "task-outcome", "task-severity"])
    assert len(re.findall(r"<img ", html)) == 4 * 3  # bars, predictions figure, forest
    head = _section(html, "summary")
    assert "/data/syn" in head and "patient-grouped out-of-fold predictions" in head
    assert "95% patient bootstrap" in head and "2 × 3" in head
    sf = _section(html, "task-sf")
    assert "Predicted against true" in sf and "mae ↓" in sf
    assert re.findall(r'<span class="best">([^<]*)</span>', sf) == ["40.000"]  # raw, lowest
    assert ">–</span><small>[–, –]</small>" in sf  # soft's NaN pearson_r
    assert "soft vs threshold-0: mae differs" in sf
    assert "vs threshold-0" not in sf.split("Paired differences", 1)[0]
    assert "Confusion matrices" in _section(html, "task-sf-change")
    assert "Confusion matrices" in _section(html, "task-severity")
    outcome = _section(html, "task-outcome")
    assert "ROC curves" in outcome and outcome.count('<span class="best">') == 1
    text = re.sub(r'src="data:[^"]*"', "", html)
    assert not re.search(r"\bnan\b", text, re.IGNORECASE)


def test_predictions_hold_class_probabilities(folder):
    rows = read_table(folder.task_predictions("outcome"), text=("sample", "patient"))
    cols = list(rows[0])
    assert cols[:3] == ["sample", "patient", "y"] and cols[3:3 + len(SOURCES)] == SOURCES
    assert {f"{s}.p_{c}" for s in SOURCES for c in "01"} <= set(cols)
    for r in rows:
        assert r["soft.p_0"] + r["soft.p_1"] == pytest.approx(1.0, abs=1e-5)
    change = read_table(folder.task_predictions("sf-change"))[0]
    assert {"raw.p_0", "raw.p_1", "raw.p_2"} <= set(change)
    assert {"soft.p_1", "soft.p_3"} <= set(read_table(folder.task_predictions("severity"))[0])
    assert not any(".p_" in c for c in read_table(folder.task_predictions("sf"))[0])


def test_report_without_probabilities_or_with_a_bad_summary(tmp_path):
    folder = make_folder(tmp_path / "down", tasks=("sf", "outcome"))
    rows = read_table(folder.task_predictions("outcome"), text=("sample", "patient"))
    write_table(folder.task_predictions("outcome"),
                [{k: v for k, v in r.items() if ".p_" not in k} for r in rows])
    folder.task_dir("severity").mkdir()
    folder.task_summary("severity").write_text("{not json", encoding="utf-8")
    folder.segment_path.write_text("{not json", encoding="utf-8")
    html = write_downstream_report(folder).read_text(encoding="utf-8")
    _check_page(html, ["summary", "task-sf", "task-outcome", "task-severity"])
    assert "no probability columns" in _section(html, "task-outcome")
    assert "unreadable" in _section(html, "task-severity")
    assert "segment.json: unreadable" in _section(html, "summary")


def test_report_of_a_folder_without_tasks(tmp_path):
    (tmp_path / "down").mkdir()
    html = write_downstream_report(tmp_path / "down").read_text(encoding="utf-8")
    _check_page(html, ["summary"])
    assert "No task has been evaluated" in html


def test_roc_points_match_the_rank_auc():
    y = np.array([0, 0, 1, 1, 0, 1, 1, 0])
    s = np.array([0.1, 0.4, 0.35, 0.8, 0.4, 0.9, 0.4, 0.2])
    fpr, tpr, auc = roc_points(y, s)
    pos, neg = s[y == 1], s[y == 0]
    rank = np.mean([(a > b) + 0.5 * (a == b) for a in pos for b in neg])
    assert auc == pytest.approx(rank)
    assert fpr[0] == tpr[0] == 0 and fpr[-1] == tpr[-1] == 1
    assert roc_points([1, 1], [0.2, 0.3]) is None


def test_cli_downstream_writes_the_report(tmp_path, monkeypatch):
    import confseg.downstream.run as run
    from confseg.cli import app

    folder = make_folder(tmp_path / "down", tasks=("sf",))
    summary = json.loads(folder.task_summary("sf").read_text(encoding="utf-8"))
    monkeypatch.setattr(run, "run_downstream", lambda *a, **k: summary)
    r = CliRunner().invoke(app, ["downstream", str(tmp_path), "--task", "sf", "--out",
                                 str(folder.root)])
    assert r.exit_code == 0, r.output
    assert f"report: {folder.report_path}" in r.output
    assert folder.report_path.is_file()


def test_report_module_loads_no_torch():
    code = ("import sys, confseg.report.downstream_report, confseg.viz.downstream_plots, "
            "confseg.downstream.run; print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"
