"""The downstream folder: the only module that names its files."""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from confseg.errors import DatasetError
from confseg.io.atomic import atomic_write_text
from confseg.runs._base import _Folder

RAW = "raw"
ANNOTATION = "annotation"
ACQUISITION = "acquisition"
CLINICAL = "clinical"  # a source read from clinical.csv's covariate columns, not stored here
PLUS_ACQ = "+" + ACQUISITION  # "<source>+acquisition": the source with the acquisition columns


class DownstreamFolder(_Folder):
    """Paths and tables of a downstream folder.

    ::

        downstream/<name>/
          segment.json                          dataset, segmenters, sampling, skipped videos
          raw/frames/<video>.csv                raw-image features per sampled frame (no model)
          segmenters/<name>/frames/<video>.csv  segmentation features per sampled frame (the
                                                cache: a rerun skips videos that have theirs)
          segmenters/<name>/videos.csv          per-video statistics of the frame features
          segmenters/<name>/patient_days.csv    per patient-day features (views, across views)
          raw/videos.csv, raw/patient_days.csv  the same for the raw-image baseline
          annotation/...                        the same from the annotations (the oracle)
          acquisition/videos.csv, patient_days.csv
                                                frame count, rate, length and size per video
                                                (no pixels): the acquisition-only control
          tasks/<task>/summary.json             metrics with intervals per source, paired
                                                differences against the references
          tasks/<task>/predictions.csv          out-of-fold predictions of every source (and,
                                                for classification, ``<source>.p_<class>``)
          report.html                           one self-contained page of every task

    Args:
        root: The folder.
    """

    @property
    def segment_path(self) -> Path:
        """``segment.json``."""
        return self.root / "segment.json"

    @property
    def report_path(self) -> Path:
        """``report.html``."""
        return self.root / "report.html"

    def source_dir(self, name: str) -> Path:
        """``raw/``, ``annotation/``, ``acquisition/`` (baselines), else ``segmenters/<name>/``."""
        if name in (RAW, ANNOTATION, ACQUISITION):
            return self.root / name
        return self.root / "segmenters" / name

    @property
    def tasks_dir(self) -> Path:
        """``tasks/``."""
        return self.root / "tasks"

    def task_dir(self, task: str) -> Path:
        """``tasks/<task>/``."""
        return self.tasks_dir / task

    def task_summary(self, task: str) -> Path:
        """``tasks/<task>/summary.json``."""
        return self.task_dir(task) / "summary.json"

    def task_predictions(self, task: str) -> Path:
        """``tasks/<task>/predictions.csv``: out-of-fold predictions of every source."""
        return self.task_dir(task) / "predictions.csv"

    def evaluated_tasks(self) -> list[str]:
        """The tasks with a ``tasks/<task>/summary.json``, sorted by name."""
        if not self.tasks_dir.is_dir():
            return []
        return sorted(p.name for p in self.tasks_dir.iterdir()
                      if (p / "summary.json").is_file())

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

    def read_task_summary(self, task: str) -> dict[str, Any]:
        """``tasks/<task>/summary.json``.

        Raises:
            DatasetError: missing or unreadable.
        """
        path = self.task_summary(task)
        try:
            obj = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise DatasetError(f"{path}: missing; run `confseg downstream --task {task}` "
                               "first") from None
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise DatasetError(f"{path}: unreadable; run `confseg downstream --task {task}` "
                               "again") from None
        if not isinstance(obj, dict):
            raise DatasetError(f"{path}: not a JSON object")
        return obj

    def write_task_summary(self, task: str, obj: Mapping[str, Any]) -> None:
        """Write ``tasks/<task>/summary.json`` atomically."""
        atomic_write_text(self.task_summary(task), json.dumps(obj, indent=1, default=float)
                          + "\n")


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
