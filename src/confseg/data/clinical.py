"""The clinical table: one typed schema for ``clinical.csv`` (one row per patient-day).

``clinical.csv`` is written by synth and the importers and read by downstream tasks. Its
schema (column name, kind, unit, description, category levels) is stored in
``dataset.json`` under ``clinical_schema``; a dataset written before the schema existed gets
one inferred from its values. Kinds:

- ``id``: the patient (text); ``day``: the study day (int). Together they key a row.
- ``int`` / ``float``: numbers; ``binary``: 0 or 1; ``category``: text from ``levels`` (any
  text when ``levels`` is empty). An empty cell is a missing value (None).
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from confseg.errors import DatasetError

KINDS = ("id", "int", "float", "binary", "category")
Value = str | int | float | None


@dataclass(frozen=True, kw_only=True)
class ClinicalColumn:
    """One column of ``clinical.csv``.

    Args:
        name: Column name.
        kind: One of :data:`KINDS`.
        description: One line: what the value means.
        unit: Unit of a number ("%", "L/min", "days").
        levels: Allowed values of a category (empty: any text).
        covariate: Known at the visit, so the clinical-variables baseline of a downstream
            task may use it as a predictor (numbers and binaries only; never a target's
            proxy such as the oxygen given).
    """

    name: str
    kind: str
    description: str = ""
    unit: str = ""
    levels: tuple[str, ...] = ()
    covariate: bool = False

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise DatasetError(f"clinical column {self.name!r}: kind {self.kind!r}; choose one "
                               f"of {', '.join(KINDS)}")
        if self.covariate and self.kind not in ("int", "float", "binary"):
            raise DatasetError(f"clinical column {self.name!r}: a covariate must be a number "
                               f"or binary, not a {self.kind}")

    def parse(self, text: str | None, *, where: str) -> Value:
        """A CSV cell as a typed value (None when empty).

        Raises:
            DatasetError: a value that does not fit the kind, naming ``where`` (file:line).
        """
        t = "" if text is None else str(text).strip()
        if t == "" or t.lower() in ("nan", "na", "none"):
            return None
        if self.kind in ("id", "category"):
            if self.kind == "category" and self.levels and t not in self.levels:
                raise DatasetError(f"{where}: {self.name}={t!r} is not one of "
                                   f"{', '.join(self.levels)}; fix the value or the schema")
            return t
        try:
            x = float(t)
        except ValueError:
            raise DatasetError(f"{where}: {self.name}={t!r} is not a number ({self.kind}); fix "
                               "the value or leave the cell empty") from None
        if not math.isfinite(x):
            return None
        if self.kind == "float":
            return x
        if x != round(x):
            raise DatasetError(f"{where}: {self.name}={t!r} is not a whole number ({self.kind})")
        if self.kind == "binary" and x not in (0, 1):
            raise DatasetError(f"{where}: {self.name}={t!r}; a binary column holds 0 or 1")
        return int(x)

    def to_json(self) -> dict[str, Any]:
        """The column for ``dataset.json``."""
        out: dict[str, Any] = {"name": self.name, "kind": self.kind}
        for key in ("description", "unit"):
            if getattr(self, key):
                out[key] = getattr(self, key)
        if self.levels:
            out["levels"] = list(self.levels)
        if self.covariate:
            out["covariate"] = True
        return out


PATIENT = ClinicalColumn(name="patient", kind="id", description="patient id")
DAY = ClinicalColumn(name="day", kind="int", description="study day (0 = admission)",
                     unit="days")


@dataclass(frozen=True)
class ClinicalSchema:
    """The columns of a clinical table; ``patient`` and ``day`` come first."""

    columns: tuple[ClinicalColumn, ...]
    inferred: bool = field(default=False, compare=False)

    def __post_init__(self) -> None:
        names = [c.name for c in self.columns]
        if names[:2] != ["patient", "day"]:
            raise DatasetError(f"clinical schema: the first columns must be patient, day (got "
                               f"{', '.join(names[:2])})")
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise DatasetError(f"clinical schema: column {dup[0]!r} is given twice")

    @classmethod
    def of(cls, *columns: ClinicalColumn) -> ClinicalSchema:
        """``patient``, ``day``, then ``columns``."""
        return cls((PATIENT, DAY, *columns))

    @property
    def names(self) -> list[str]:
        """Column names, in order."""
        return [c.name for c in self.columns]

    def column(self, name: str) -> ClinicalColumn:
        """The column called ``name``.

        Raises:
            DatasetError: no such column (naming the ones there are).
        """
        for c in self.columns:
            if c.name == name:
                return c
        raise DatasetError(f"clinical.csv has no column {name!r}; columns: "
                           f"{', '.join(self.names)}")

    def to_json(self) -> list[dict[str, Any]]:
        """The schema for ``dataset.json``'s ``clinical_schema``."""
        return [c.to_json() for c in self.columns]

    @classmethod
    def from_json(cls, obj: Any, *, where: str) -> ClinicalSchema:
        """Parse ``dataset.json``'s ``clinical_schema``."""
        if not isinstance(obj, list) or not all(isinstance(c, dict) for c in obj):
            raise DatasetError(f"{where}: clinical_schema must be a list of columns")
        try:
            cols = tuple(ClinicalColumn(name=str(c["name"]), kind=str(c["kind"]),
                                        description=str(c.get("description", "")),
                                        unit=str(c.get("unit", "")),
                                        levels=tuple(str(v) for v in c.get("levels", ())),
                                        covariate=bool(c.get("covariate", False)))
                         for c in obj)
        except KeyError as exc:
            raise DatasetError(f"{where}: a clinical_schema column lacks {exc}") from None
        return cls(cols)

    @classmethod
    def infer(cls, header: Sequence[str], rows: Sequence[Mapping[str, str]]) -> ClinicalSchema:
        """A schema from the values (for a clinical.csv written without one)."""
        if list(header[:2]) != ["patient", "day"]:
            raise DatasetError(f"clinical.csv: the first columns must be patient, day (got "
                               f"{', '.join(header[:2])})")
        cols = [PATIENT, DAY]
        for name in header[2:]:
            vals = [str(r.get(name, "")).strip() for r in rows]
            vals = [v for v in vals if v and v.lower() not in ("nan", "na", "none")]
            cols.append(ClinicalColumn(name=name, kind=_infer_kind(vals)))
        return cls(tuple(cols), inferred=True)


def _infer_kind(values: list[str]) -> str:
    try:
        nums = [float(v) for v in values]
    except ValueError:
        return "category"
    if nums and all(x in (0.0, 1.0) for x in nums):
        return "binary"
    if all(math.isfinite(x) and x == round(x) for x in nums):
        return "int"
    return "float"


@dataclass
class ClinicalTable:
    """Typed rows of ``clinical.csv`` with their schema."""

    schema: ClinicalSchema
    rows: list[dict[str, Value]]
    path: Path | None = None

    def _where(self) -> str:
        return str(self.path or "clinical.csv")

    def values(self, name: str) -> list[Value]:
        """The column ``name``, row by row."""
        self.schema.column(name)
        return [r.get(name) for r in self.rows]

    def numeric(self, name: str) -> dict[tuple[str, int], float]:
        """``(patient, day) -> value`` of a numeric or binary column (missing values left out).

        Raises:
            DatasetError: no such column, or a category column.
        """
        col = self.schema.column(name)
        if col.kind not in ("int", "float", "binary"):
            raise DatasetError(f"{self._where()}: column {name!r} is a {col.kind}, not a number; "
                               "choose a numeric target column")
        return {(str(r["patient"]), int(r["day"])): float(r[name])  # type: ignore[arg-type]
                for r in self.rows if r.get(name) is not None}

    def binary_per_patient(self, name: str) -> dict[str, int]:
        """``patient -> 0/1`` of a binary column (its last non-missing day).

        Raises:
            DatasetError: no such column, not binary, or a patient whose days disagree.
        """
        col = self.schema.column(name)
        if col.kind != "binary":
            raise DatasetError(f"{self._where()}: column {name!r} is a {col.kind}; an outcome "
                               "task needs a binary (0/1) column")
        out: dict[str, int] = {}
        for r in sorted(self.rows, key=lambda r: int(r["day"])):  # type: ignore[arg-type]
            v = r.get(name)
            if v is None:
                continue
            p = str(r["patient"])
            if p in out and out[p] != v:
                raise DatasetError(f"{self._where()}: patient {p} has {name}={out[p]} and {v} "
                                   "on different days; an outcome is one value per patient")
            out[p] = int(v)  # type: ignore[arg-type]
        return out

    @property
    def covariates(self) -> list[str]:
        """The columns marked ``covariate`` (the clinical-variables baseline's predictors)."""
        return [c.name for c in self.schema.columns if c.covariate]

    def covariate_rows(self) -> dict[tuple[str, int], dict[str, float]]:
        """``(patient, day) -> {covariate: value}`` (NaN where missing); empty without any."""
        names = self.covariates
        if not names:
            return {}
        return {(str(r["patient"]), int(r["day"])): {  # type: ignore[arg-type]
            f"clin.{n}": math.nan if r.get(n) is None else float(r[n])  # type: ignore[arg-type]
            for n in names} for r in self.rows}

    def category_per_patient(self, name: str, positive: Sequence[str]) -> dict[str, int]:
        """``patient -> 1`` when a category column is one of ``positive``, else 0.

        The patient's last non-missing day counts.
        """
        col = self.schema.column(name)
        if col.kind != "category":
            raise DatasetError(f"{self._where()}: column {name!r} is a {col.kind}, not a "
                               "category")
        out: dict[str, int] = {}
        for r in sorted(self.rows, key=lambda r: int(r["day"])):  # type: ignore[arg-type]
            if r.get(name) is not None:
                out[str(r["patient"])] = int(str(r[name]) in positive)
        return out

    def days(self) -> dict[str, list[int]]:
        """``patient -> sorted days`` present in the table."""
        out: dict[str, set[int]] = {}
        for r in self.rows:
            out.setdefault(str(r["patient"]), set()).add(int(r["day"]))  # type: ignore[arg-type]
        return {p: sorted(d) for p, d in out.items()}

    def require_two_days(self, task: str) -> None:
        """Raise DatasetError when no patient has two days (for ``sf-change``)."""
        if not any(len(d) >= 2 for d in self.days().values()):
            raise DatasetError(f"{self._where()}: every patient has a single day; {task} compares "
                               "two days of a patient and needs a dataset with --days 2 or more")


def parse_rows(schema: ClinicalSchema, header: Sequence[str], raw: Iterable[Mapping[str, str]],
               *, where: str) -> list[dict[str, Value]]:
    """Typed rows from CSV rows, checked against ``schema``.

    Raises:
        DatasetError: a header that differs from the schema, a bad value, a missing patient or
            day, or a (patient, day) given twice.
    """
    if list(header) != schema.names:
        extra = sorted(set(header) ^ set(schema.names))
        raise DatasetError(f"{where}: its columns differ from the clinical schema in "
                           f"dataset.json ({', '.join(extra) or 'order'}); rewrite the table or "
                           "the schema")
    rows: list[dict[str, Value]] = []
    seen: set[tuple[str, int]] = set()
    for n, r in enumerate(raw, 2):
        row = {c.name: c.parse(r.get(c.name), where=f"{where}:{n}") for c in schema.columns}
        if row["patient"] is None or row["day"] is None:
            raise DatasetError(f"{where}:{n}: patient and day must not be empty")
        key = (str(row["patient"]), int(row["day"]))  # type: ignore[arg-type]
        if key in seen:
            raise DatasetError(f"{where}:{n}: patient {key[0]} day {key[1]} appears twice; one "
                               "row per patient-day")
        seen.add(key)
        rows.append(row)
    return rows


def write_clinical_csv(path: Path, rows: Iterable[Mapping[str, Any]],
                       schema: ClinicalSchema) -> None:
    """Write ``clinical.csv`` with the schema's columns, each value checked against its kind.

    Raises:
        DatasetError: a value that does not fit its column.
    """
    checked = []
    for n, r in enumerate(rows, 2):
        unknown = sorted(set(r) - set(schema.names))
        if unknown:
            raise DatasetError(f"clinical row {n - 1}: column {unknown[0]!r} is not in the schema")
        checked.append({c.name: _cell(c.parse(None if r.get(c.name) is None else str(
            int(r[c.name]) if isinstance(r.get(c.name), bool) else r[c.name]),
            where=f"clinical row {n - 1}")) for c in schema.columns})
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=schema.names)
        w.writeheader()
        w.writerows(checked)


def _cell(v: Value) -> str:
    return "" if v is None else repr(v) if isinstance(v, float) else str(v)
