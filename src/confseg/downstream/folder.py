"""The downstream folder: the only module that names its files.

::

    downstream/<name>/
      segment.json                          dataset, segmenters, sampling, skipped videos, times
      raw/frames/<video>.csv                raw-image features per sampled frame (no model)
      segmenters/<name>/frames/<video>.csv  segmentation features per sampled frame (the cache:
                                            a rerun skips videos that have theirs)
      segmenters/<name>/videos.csv          per-video statistics of the frame features
      segmenters/<name>/patient_days.csv    per patient-day features (views and across views)
      raw/videos.csv, raw/patient_days.csv  the same for the raw-image baseline
      annotation/...                        the same from the annotations (the oracle)
      tasks/<task>/summary.json             metrics with intervals per source, paired
                                            differences against the references
      tasks/<task>/predictions.csv          out-of-fold predictions of every source
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from confseg.errors import DatasetError
from confseg.io.atomic import atomic_write_text

RAW = "raw"
ANNOTATION = "annotation"


class DownstreamFolder:
    """Paths and tables of a downstream folder.

    Args:
        root: The folder.
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    @property
    def segment_path(self) -> Path:
        """``segment.json``."""
        return self.root / "segment.json"

    def source_dir(self, name: str) -> Path:
        """``raw/`` and ``annotation/`` for the baselines, else ``segmenters/<name>/``."""
        if name in (RAW, ANNOTATION):
            return self.root / name
        return self.root / "segmenters" / name

    def task_dir(self, task: str) -> Path:
        """``tasks/<task>/``."""
        return self.root / "tasks" / task

    def task_summary(self, task: str) -> Path:
        """``tasks/<task>/summary.json``."""
        return self.task_dir(task) / "summary.json"

    def task_predictions(self, task: str) -> Path:
        """``tasks/<task>/predictions.csv``: out-of-fold predictions of every source."""
        return self.task_dir(task) / "predictions.csv"

    def frames_csv(self, name: str, video_id: str) -> Path:
        """``<source>/frames/<video>.csv``."""
        return self.source_dir(name) / "frames" / f"{video_id}.csv"

    def videos_csv(self, name: str) -> Path:
        """``<source>/videos.csv``."""
        return self.source_dir(name) / "videos.csv"

    def patient_days_csv(self, name: str) -> Path:
        """``<source>/patient_days.csv``."""
        return self.source_dir(name) / "patient_days.csv"

    def read_segment(self) -> dict[str, Any]:
        """``segment.json`` ({} when absent)."""
        try:
            return json.loads(self.segment_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise DatasetError(f"{self.segment_path}: unreadable; segment again with "
                               "--overwrite") from None

    def write_segment(self, obj: dict[str, Any]) -> None:
        """Write ``segment.json`` atomically."""
        atomic_write_text(self.segment_path, json.dumps(obj, indent=1, default=str) + "\n")


def write_table(path: Path, rows: Sequence[Mapping[str, Any]]) -> None:
    """Write rows (the union of their keys as columns) as CSV, atomically."""
    cols: list[str] = []
    seen: set[str] = set()
    for r in rows:
        for k in r:
            if k not in seen:
                seen.add(k)
                cols.append(k)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: _fmt(v) for k, v in r.items()})
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, buf.getvalue())


def read_table(path: Path, *, text: Sequence[str] = ("video", "patient", "view")
               ) -> list[dict[str, Any]]:
    """A table written by :func:`write_table`: ``text`` columns as text, the rest as floats."""
    with path.open(newline="", encoding="utf-8") as f:
        return [{k: (v if k in text else _num(v)) for k, v in r.items()}
                for r in csv.DictReader(f)]


def _fmt(v: Any) -> Any:
    if isinstance(v, float):
        return "" if math.isnan(v) else f"{v:.6g}"
    return v


def _num(v: str) -> float:
    try:
        return float(v) if v != "" else math.nan
    except ValueError:
        return math.nan
