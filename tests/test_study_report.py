"""The study report: rendered from a study folder's files only (built here without training)."""

from __future__ import annotations

import base64
import io
import math
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from confseg.io.images import write_png
from confseg.report.study_report import write_study_report
from confseg.runs import StudyFolder

from conftest import write_tiny_dataset

SECTIONS = ("summary", "dataset", "table", "levels", "forest", "calibration", "examples",
            "curves", "reproduce")
STRATEGIES = {"threshold:0": "threshold-0", "soft": "soft"}
CLASSES = ("a", "b")
METRICS = ("dice@any", "dice@0.6", "qubiq", "soft_dice", "ece", "hd95")
LEVELS = ("any", "0.2", "0.4", "0.5", "0.6", "0.8", "1.0")


def _ci(mean: float) -> dict[str, float]:
    return {"mean": mean, "lo": mean - 0.05, "hi": mean + 0.05, "n_patients": 4}


def _summary(rng: np.random.Generator) -> dict:
    table = {s: {c: {m: _ci(float(rng.uniform(0.2, 0.8))) for m in METRICS} for c in CLASSES}
             for s in STRATEGIES}
    table["soft"]["b"]["hd95"] = {"mean": math.nan, "lo": math.nan, "hi": math.nan,
                                  "n_patients": 0}  # no boundaries: NaN in the JSON
    diff = {"mean": 0.04, "lo": 0.01, "hi": 0.07, "n_patients": 4, "wilcoxon_p": 0.125,
            "effect_size": 1.0}
    best = {c: {m: {"strategy": "soft", **table["soft"][c][m], "runner_up": "threshold:0",
                    "difference": diff, "distinguishable": True,
                    "sentence": f"soft is best on {m} for {c}, ahead of threshold:0 by 0.040."}
                for m in METRICS} for c in CLASSES}
    return {
        "strategies": list(STRATEGIES), "classes": list(CLASSES), "metrics": list(METRICS),
        "lower_is_better": ["ece", "hd95"], "n_cells": 4, "finished_cells": 3,
        "missing": [{"cell": "soft/fold_1/seed_0", "status": "failed",
                     "error": "RuntimeError: out of memory"}],
        "n_patients": 4, "seeds": 1, "k": 2, "table": table,
        "levels": {s: {c: {lv: _ci(0.6 - 0.05 * i) for i, lv in enumerate(LEVELS)}
                       for c in CLASSES} for s in STRATEGIES},
        "best": best, "cell_seconds": {"threshold:0": 20.0, "soft": 9.5},
        "interval": "95% percentile interval, patients resampled",
        "examples": [{"id": "p0_0", "patient": "p0", "fold": 0, "kind": "worst",
                      "metric": "dice@any", "mean_score": 0.1, "predictions": STRATEGIES},
                     {"id": "p1_1", "patient": "p1", "fold": 1, "kind": "typical",
                      "metric": "dice@any", "mean_score": 0.5, "predictions": STRATEGIES}],
    }


def _metrics_csv(path: Path, *, val: bool) -> None:
    cols = "epoch,step,train/bce,train/dice_loss,train/loss"
    rows = [f"{e},{2 * e + 1},0.6,0.9,{1.5 - 0.1 * e}" for e in range(3)]
    if val:  # Lightning logs validation on rows of its own
        cols += ",val/loss,val/dice,val/soft_dice"
        rows = [r + ",,," for r in rows] + [f"{e},{2 * e + 1},,,,{1.4 - 0.1 * e},{0.3 + 0.1 * e},"
                                            f"{0.2 + 0.1 * e}" for e in range(3)]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(cols + "\n" + "\n".join(rows) + "\n")


def make_study(root: Path, *, results: bool = True) -> StudyFolder:
    """A 2-strategy x 2-fold study folder with collected results, written without training."""
    data = write_tiny_dataset(root / "ds", raters=2)
    study = StudyFolder(root / "study")
    study.root.mkdir(parents=True)
    study.write_spec({
        "data": str(data), "strategies": list(STRATEGIES), "k": 2, "seeds": 1, "split_seed": 0,
        "base": {"model": "unet-resnet18", "epochs": 3, "size": 64}, "references": ["any", "0.6"],
        "compare": ["threshold:0", "threshold:0.5"], "n_boot": 100,
        "run": {"command": "confseg study run ds --strategies threshold:0 soft --folds 2",
                "created": "2026-01-01T00:00:00", "confseg": "0.1.0", "python": "3.11.7",
                "cwd": str(root)}})
    study.update_status(state="finished", pid=1, host="test", started="2026-01-01T00:00:00",
                        executor="local", jobs=2, threads=1, gpus=0, cells=4, todo=4,
                        wall_seconds=125.0, ended="2026-01-01T00:02:05")
    _metrics_csv(study.cell("threshold-0", 0, 0).metrics_csv, val=True)
    _metrics_csv(study.cell("soft", 0, 0).metrics_csv, val=False)
    study.cell("soft", 0, 0).update_status(status="finished", torch="2.0", lightning="2.1")
    if not results:
        return study
    rng = np.random.default_rng(0)
    study.write_json(study.summary_path, _summary(rng))
    comp = {"soft": {c: {m: {"mean": 0.02, "lo": -0.01, "hi": 0.05, "n_patients": 4,
                             "wilcoxon_p": 0.25, "effect_size": 0.5, "p_holm": 0.25}
                         for m in METRICS} for c in CLASSES}}
    study.write_json(study.paired_path, {"references": ["threshold:0"], "n_boot": 100,
                                         "method": "paired bootstrap",
                                         "comparisons": {"threshold:0": comp}})
    bins = {"count": [10.0, 0.0, 5.0, 3.0], "sum_p": [1.0, 0.0, 2.5, 2.7],
            "sum_c": [0.5, 0.0, 2.0, 2.4]}
    study.write_json(study.reliability_path, {s: dict.fromkeys(CLASSES, bins)
                                              for s in STRATEGIES})
    for ex in ("p0_0", "p1_1"):
        write_png(study.example_png(ex, "image"), rng.integers(0, 255, (32, 40), np.uint8))
        for kind in ("label", *STRATEGIES.values()):
            write_png(study.example_png(ex, kind), rng.integers(0, 255, (32, 40, 3), np.uint8))
    return study


def _check_page(html: str) -> None:
    ids = re.findall(r'<section id="([^"]+)"', html)
    assert ids == list(SECTIONS)
    assert "http://" not in html and "https://" not in html
    assert "<script" not in html and "<link" not in html
    for src in re.findall(r'<img[^>]*\ssrc="([^"]*)"', html):
        assert src.startswith("data:image/png;base64,")
        with Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))) as im:
            assert im.format == "PNG"
            im.verify()


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> StudyFolder:
    return make_study(tmp_path_factory.mktemp("sr"))


def test_report_renders_every_section_self_contained(study):
    out = write_study_report(study.root)
    assert out == study.report_path
    html = out.read_text(encoding="utf-8")
    _check_page(html)
    # figures: level curves, two forest plots (headline and QUBIQ), reliability, training;
    # examples: 2 rows x (image, label, 2 strategies)
    assert len(re.findall(r"<img ", html)) == 5 + 2 * 4
    assert "soft is best on dice@any for a" in html
    assert "Dice vs label (any mark)" in html and "ECE ↓" in html
    assert "threshold:0.5" in html  # the compare list in the recipe
    assert "2 min 05 s" in html and "lightning" in html and "2.1" in html


def test_report_lists_missing_cells(study):
    html = write_study_report(study, study.root / "other.html").read_text(encoding="utf-8")
    summary = html.split('<section id="dataset"', 1)[0]
    assert "soft/fold_1/seed_0" in summary and "failed" in summary
    assert "RuntimeError: out of memory" in summary
    assert "3 of 4 cells finished" in summary


def test_report_renders_when_dataset_is_gone(tmp_path):
    study = make_study(tmp_path)
    shutil.rmtree(tmp_path / "ds")
    html = write_study_report(study).read_text(encoding="utf-8")
    _check_page(html)
    assert "no longer exists" in html


def test_report_renders_before_results_are_collected(tmp_path):
    study = make_study(tmp_path, results=False)
    html = write_study_report(study).read_text(encoding="utf-8")
    _check_page(html)
    assert "No collected results" in html
    assert 'alt="training curves"' in html  # the cells' logs are there already


def test_report_module_loads_no_torch():
    code = "import sys, confseg.report.study_report; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"
