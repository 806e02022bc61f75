"""Importer for COVID-BLUES (Wiedemann et al. 2025): LUS videos + severity + clinical data.

Source layout::

    SRC/lus_videos/patient_<id>_<L|R><1-3>[_<k>].mp4
    SRC/severity.csv               video_file, Severity Score, A-lines, B-lines, comments
    SRC/clinical_variables.csv     one row per patient (patient_id, ...)

One video-only item per video (no image, no masks); clinical.csv gets one row per
patient on day 0.
"""

from __future__ import annotations

import csv
import math
import re
from pathlib import Path
from typing import Any

from confseg.data import DatasetWriter
from confseg.data.clinical import ClinicalColumn, ClinicalSchema
from confseg.errors import ImportLayoutError
from confseg.importers._common import (
    PathLike,
    ProgressFn,
    check_paths,
    finish,
    inside,
    require_dir,
    require_file,
    tick,
    visible,
)

LAYOUT = "covid-blues"
CLASSES = ("pleural_line", "b_line", "a_line")
ROOM_AIR_FIO2 = 0.21
_VIDEO_RE = re.compile(r"^patient_(?P<pid>\d+)_(?P<view>[LR][1-3])(?:_(?P<rep>\d+))?$")
_EXPECT_VIDEO = "lus_videos/patient_<id>_<L|R><1-3>.mp4"
_STATUS = "state of the patient on day {} (0 ICU, 1 hospitalised, 2 discharged, 3 dead)"
CLINICAL_SCHEMA = ClinicalSchema.of(
    ClinicalColumn(name="spo2", kind="float", unit="%",
                   description="SpO2 on room air (missing for patients already on oxygen)"),
    ClinicalColumn(name="fio2", kind="float", description="0.21 when spo2 is present"),
    ClinicalColumn(name="sf_ratio", kind="float", description="room-air SpO2 / 0.21"),
    ClinicalColumn(name="spo2_with_ox", kind="float", unit="%",
                   description="SpO2 with oxygen (a range is its midpoint)"),
    ClinicalColumn(name="oxygen_liter", kind="float", unit="L/min", description="O2 flow"),
    ClinicalColumn(name="respiratory_rate", kind="float", unit="/min", covariate=True,
                   description="respiratory rate at admission"),
    ClinicalColumn(name="age", kind="float", unit="years", covariate=True, description="age"),
    ClinicalColumn(name="sex", kind="binary", covariate=True,
                   description="sex as the source codes it (pat_sex, 0/1)"),
    ClinicalColumn(name="bmi", kind="float", unit="kg/m2", covariate=True,
                   description="body-mass index"),
    ClinicalColumn(name="pulse", kind="float", unit="/min", covariate=True,
                   description="heart rate at admission"),
    ClinicalColumn(name="body_temperature", kind="float", unit="degC", covariate=True,
                   description="body temperature at admission"),
    ClinicalColumn(name="crp", kind="float", unit="mg/L", covariate=True,
                   description="C-reactive protein at admission"),
    *(ClinicalColumn(name=f"outcome_d{d}", kind="category", levels=("0", "1", "2", "3"),
                     description=_STATUS.format(d)) for d in (30, 0, 1, 3, 5, 7)),
    ClinicalColumn(name="los_totaladmission", kind="int", unit="days",
                   description="length of stay of the admission"),
    ClinicalColumn(name="stay_icu", kind="binary",
                   description="admitted to ICU right after the ER (mostly empty)"),
    ClinicalColumn(name="diagnosis", kind="category",
                   description="the single clinical diagnosis flagged (empty if none or "
                               "several)"),
    ClinicalColumn(name="cov_test", kind="binary", description="COVID PCR result, 1 = positive"),
)
CLINICAL_COLUMNS = CLINICAL_SCHEMA.names
_SOURCE_COLUMNS = {  # clinical.csv column -> clinical_variables.csv column
    "spo2_with_ox": "oxygen_saturation_with_ox",
    "oxygen_liter": "oxygen_liter",
    "respiratory_rate": "respiratory_rate",
    "age": "pat_age",
    "bmi": "pat_bmi",
    "pulse": "pulse",
    "body_temperature": "body_temperature",
    "crp": "CRP",
}
_CODE_COLUMNS = {  # integer-coded columns
    "outcome_d30": "outcome_status_d30",
    "outcome_d0": "outcome_status_d0",
    "outcome_d1": "outcome_status_d1",
    "outcome_d3": "outcome_status_d3",
    "outcome_d5": "outcome_status_d5",
    "outcome_d7": "outcome_status_d7",
    "los_totaladmission": "los_totaladmission",
    "stay_icu": "stay_icu",
    "cov_test": "cov_test",
    "sex": "pat_sex",
}
_RANGE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*-\s*(\d+(?:\.\d+)?)\s*$")


def parse_number(text: str | None) -> float | None:
    """A clinical value as float, or None when missing.

    Empty cells and negative values (the dataset codes -99 = missing and -96 = not
    applicable; none of the imported quantities can be negative) are missing. A range
    such as ``90-92`` becomes its midpoint.
    """
    if text is None or not text.strip():
        return None
    m = _RANGE_RE.match(text)
    if m:
        return (float(m[1]) + float(m[2])) / 2
    try:
        val = float(text)
    except ValueError:
        return None
    if not math.isfinite(val) or val < 0:
        return None
    return val


def _parse_code(text: str | None) -> int | None:
    val = parse_number(text)
    return None if val is None else round(val)


def _parse_yes_no(text: str | None) -> bool | None:
    t = (text or "").strip().lower()
    return (
        True
        if t in ("yes", "y", "1", "true")
        else False
        if t in ("no", "n", "0", "false")
        else None
    )


def _read_csv(path: Path, key: str) -> list[dict[str, str]]:
    """Rows of a UTF-8 CSV with a header holding ``key``; every row as wide as the header.

    Raises:
        ImportLayoutError: not UTF-8, not CSV, no ``key`` column, or a row with fewer or
            more cells than the header (naming the line).
    """
    rows: list[dict[str, str]] = []
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            if reader.fieldnames is None or key not in reader.fieldnames:
                raise ImportLayoutError(
                    f"{path}: column {key!r} missing; the {LAYOUT} layout expects it in the "
                    "header"
                )
            width = len(reader.fieldnames)
            for row in reader:
                n = width + len(row.get(None) or []) - sum(v is None for v in row.values())
                if n != width:
                    raise ImportLayoutError(
                        f"{path}: line {reader.line_num} has {n} cells, the header has {width}; "
                        "fix the row (quote cells that hold commas)"
                    )
                rows.append(row)
    except UnicodeDecodeError as exc:
        raise ImportLayoutError(
            f"{path}: not UTF-8 text (byte {exc.start}); save the CSV as UTF-8"
        ) from None
    except csv.Error as exc:
        raise ImportLayoutError(f"{path}: not a readable CSV ({exc}); fix the file") from None
    return rows


def clinical_row(row: dict[str, str]) -> dict[str, Any]:
    """One clinical.csv row (day 0) from a clinical_variables.csv row."""
    spo2 = parse_number(row.get("oxygen_saturation_without_ox"))
    out: dict[str, Any] = {
        "patient": str(int(float(row["patient_id"]))),
        "day": 0,
        "spo2": spo2,
        "fio2": ROOM_AIR_FIO2 if spo2 is not None else None,
        "sf_ratio": round(spo2 / ROOM_AIR_FIO2, 1) if spo2 is not None else None,
    }
    for dst, col in _SOURCE_COLUMNS.items():
        out[dst] = parse_number(row.get(col))
    for dst, col in _CODE_COLUMNS.items():
        out[dst] = _parse_code(row.get(col))
    diagnoses = [
        k.split("#", 1)[1]
        for k, v in row.items()
        if k.startswith("clin_diagn#") and parse_number(v) == 1
    ]
    out["diagnosis"] = diagnoses[0] if len(diagnoses) == 1 else None
    return out


def _scan_videos(src: Path, folder: Path) -> list[tuple[Path, re.Match[str]]]:
    videos = []
    for p in visible(folder):
        p = inside(src, p.relative_to(src), what=f"{LAYOUT} source file {p}")
        m = _VIDEO_RE.match(p.stem)
        if not p.is_file() or p.suffix.lower() != ".mp4" or m is None:
            raise ImportLayoutError(
                f"{p}: unexpected file; the {LAYOUT} layout expects {_EXPECT_VIDEO}"
            )
        videos.append((p, m))
    if not videos:
        raise ImportLayoutError(f"{folder}: no videos; the {LAYOUT} layout expects {_EXPECT_VIDEO}")
    videos.sort(key=lambda v: (int(v[1]["pid"]), v[1]["view"], int(v[1]["rep"] or 1)))
    return videos


def import_covid_blues(
    src: PathLike,
    dst: PathLike,
    *,
    overwrite: bool = False,
    progress: ProgressFn | None = None,
    name: str | None = None,
) -> Path:
    """Import COVID-BLUES into a native (video-only) dataset with clinical.csv.

    Args:
        src: Folder holding ``lus_videos/``, ``severity.csv`` and ``clinical_variables.csv``.
        dst: New dataset folder.
        overwrite: Replace ``dst`` if it exists.
        progress: Called as ``progress(done, total)`` after each video.
        name: Dataset name (default: the source folder's name).

    Returns:
        The dataset folder.
    """
    src_p, dst_p = check_paths(src, dst, LAYOUT)
    videos = _scan_videos(src_p, require_dir(src_p / "lus_videos", LAYOUT, _EXPECT_VIDEO))
    sev_path = require_file(src_p / "severity.csv", LAYOUT, "severity.csv (one row per video)")
    clin_path = require_file(
        src_p / "clinical_variables.csv", LAYOUT, "clinical_variables.csv (one row per patient)"
    )
    for p in (sev_path, clin_path):
        inside(src_p, p.name, what=f"{LAYOUT} source file {p}")
    severity = {r["video_file"].strip(): r for r in _read_csv(sev_path, "video_file")}
    clinical = []
    for r in _read_csv(clin_path, "patient_id"):
        try:
            clinical.append(clinical_row(r))
        except (ValueError, OverflowError):
            raise ImportLayoutError(
                f"{clin_path}: patient_id {r['patient_id']!r} is not a number; the {LAYOUT} "
                "layout expects integer patient ids"
            ) from None
    clinical.sort(key=lambda r: int(r["patient"]))
    total = len(videos)
    meta = {"source": {"layout": LAYOUT, "path": str(src_p.resolve())}}
    tick(progress, 0, total)
    with DatasetWriter(
        dst_p, name=name or src_p.resolve().name, classes=CLASSES, meta=meta, overwrite=overwrite
    ) as w:
        for done, (path, m) in enumerate(videos, 1):
            sev = severity.get(path.stem, {})
            w.add(
                item_id=path.stem,
                patient=str(int(m["pid"])),
                view=m["view"],
                day=0,
                video_file=path,
                severity=parse_number(sev.get("Severity Score")),
                a_lines=_parse_yes_no(sev.get("A-lines")),
                b_lines=_parse_yes_no(sev.get("B-lines")),
                severity_comment=(sev.get("comments") or "").strip() or None,
            )
            tick(progress, done, total)
        w.write_clinical(clinical, CLINICAL_SCHEMA)
        finish(w)
    return dst_p
