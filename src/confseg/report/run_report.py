"""A self-contained HTML page for one run: config, split, metrics with intervals, figures."""

from __future__ import annotations

import base64
import io
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from jinja2 import Environment, PackageLoader, select_autoescape
from PIL import Image

from confseg.dataset import load_dataset
from confseg.io.atomic import atomic_write_text

METRICS = (("dice@any", "Dice vs label (any mark)"), ("dice@0.6", "Dice vs label ≥60%"),
           ("qubiq", "QUBIQ score"), ("soft_dice", "soft Dice"), ("dice_truth", "Dice vs truth"),
           ("hd95", "HD95 (px)"), ("ece", "ECE"), ("brier", "Brier"))


def _png_data_uri(path: Path) -> str | None:
    if not path.exists():
        return None
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()


def _array_uri(arr: np.ndarray) -> str:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _examples(run: Path, cfg: dict[str, Any], summary: dict[str, Any], n: int = 3
              ) -> list[dict[str, str]]:
    """Test images with the annotator's confidence and the model's probabilities."""
    from confseg.inference import Predictor
    from confseg.report.overlay import overlay_confidence
    from confseg.torchdata import to_channels

    ds = load_dataset(summary.get("data", cfg["data"]), validate=False)
    pats = set(summary.get("patients", []))
    items = [it for it in ds.image_items() if it.patient in pats][:n]
    if not items:
        return []
    predictor = Predictor.from_run(run)
    out = []
    for it in items:
        img = ds.read_image(it)
        grey = (to_channels(img, 1)[0] * 255).astype(np.uint8)
        prob = predictor.predict(img)
        out.append({
            "id": it.id,
            "label": _array_uri(overlay_confidence(grey, ds.read_confidence_stack(it))),
            "pred": _array_uri(overlay_confidence(grey, prob)),
        })
    return out


def write_run_report(run: str | os.PathLike[str], out: str | os.PathLike[str] | None = None,
                     *, examples: int = 3) -> Path:
    """Render ``run/report.html`` (or ``out``) from the files of a finished run."""
    run = Path(run)
    out = Path(out) if out else run / "report.html"
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    summary = json.loads((run / "summary.json").read_text())
    status = json.loads((run / "run.json").read_text()) if (run / "run.json").exists() else {}
    classes = list(summary["classes"])
    rows = []
    for key, label in METRICS:
        if not any(key in summary["classes"][c] for c in classes):
            continue
        cells = []
        for c in classes:
            m = summary["classes"][c].get(key)
            cells.append("–" if m is None or m["mean"] != m["mean"] else
                         f"{m['mean']:.3f} <small>[{m['lo']:.3f}, {m['hi']:.3f}]</small>")
        rows.append({"label": label, "cells": cells})
    env = Environment(loader=PackageLoader("confseg.report", "templates"),
                      autoescape=select_autoescape(["html"]))
    html = env.get_template("run.html").render(
        run=run.name, cfg=cfg, summary=summary, status=status, classes=classes, rows=rows,
        progress=_png_data_uri(run / "progress.png"),
        reliability=[(c, _png_data_uri(run / f"reliability_{c}.png")) for c in classes],
        examples=_examples(run, cfg, summary, examples) if examples else [],
    )
    atomic_write_text(out, html)
    return out
