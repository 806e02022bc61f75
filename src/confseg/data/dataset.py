"""The native dataset format: ``dataset.json`` + PNGs. Read, validate, write.

Layout (paths in ``dataset.json`` are relative to the dataset folder)::

    DATASET/
      dataset.json
      images/<id>.png
      confidence/<class>/<id>.png     uint8 percent, 0 = not marked
      raters/<rater>/<class>/<id>.png optional
      ignore/<id>.png                 optional, pixels left out of loss and metrics
      truth/<class>/<id>.png          optional, true masks (synthetic data)
      clinical.csv                    optional, one row per patient-day
      videos/<id>.mp4                 optional

A class an image item has no confidence entry for is "not marked" (all zeros).
"""

from __future__ import annotations

import csv
import json
import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from confseg.data.clinical import ClinicalSchema, ClinicalTable, parse_rows
from confseg.data.schema import (
    DEFAULT_SCALE,
    ClassSchema,
    ConfidenceLevel,
    Item,
    percent_to_unit,
)
from confseg.errors import DatasetError, MediaError
from confseg.io.atomic import atomic_write_text
from confseg.io.images import (
    image_shape,
    read_image,
    read_mask,
    read_percent_map,
    read_rater_map,
)

FORMAT_VERSION = 1
DATASET_JSON = "dataset.json"
log = logging.getLogger("confseg")
SPLITS_JSON = "splits.json"


@dataclass(kw_only=True)
class Dataset:
    """A native confseg dataset on disk.

    Attributes:
        root: The dataset folder.
        name: Dataset name.
        schema: Ordered classes.
        scale: The confidence scale annotators use.
        items: Items in file order.
        meta: Other top-level keys of dataset.json, kept unchanged.
    """

    root: Path
    name: str
    schema: ClassSchema
    scale: tuple[ConfidenceLevel, ...] = DEFAULT_SCALE
    items: list[Item] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)

    # ----- look-ups -------------------------------------------------------------------
    @property
    def classes(self) -> tuple[str, ...]:
        """Class names in order."""
        return self.schema.names

    def item(self, item_id: str) -> Item:
        """The item with id ``item_id``."""
        for it in self.items:
            if it.id == item_id:
                return it
        raise DatasetError(f"{self.root}: no item with id {item_id!r}")

    def patients(self) -> list[str]:
        """Sorted distinct patient ids."""
        return sorted({it.patient for it in self.items})

    def image_items(self) -> list[Item]:
        """Items that have an image (the ones a segmentation model trains on)."""
        return [it for it in self.items if it.image is not None]

    def path(self, rel: str) -> Path:
        """Absolute path of a path relative to the dataset folder."""
        return self.root / rel

    # ----- readers ----------------------------------------------------------------------
    def read_image(self, item: Item) -> np.ndarray:
        """The item's image, ``(H, W)`` or ``(H, W, C)``."""
        if item.image is None:
            raise DatasetError(f"{self.root}: item {item.id!r} has no image")
        return read_image(self.path(item.image))

    def image_size(self, item: Item) -> tuple[int, int]:
        """``(H, W)`` of the item's image (read from the header; the pixels are not decoded)."""
        if item.image is None:
            raise DatasetError(f"{self.root}: item {item.id!r} has no image")
        return image_shape(self.path(item.image))

    def read_confidence(self, item: Item, cls: str, shape: tuple[int, int] | None = None
                        ) -> np.ndarray:
        """Confidence of class ``cls`` for ``item`` as float32 in [0, 1].

        Args:
            item: The item.
            cls: Class name.
            shape: Size to use for an all-zero map when the class is not marked
                (defaults to the image size).
        """
        self.schema.index(cls)
        rel = item.confidence.get(cls)
        if rel is None:
            return np.zeros(shape or self.image_size(item), dtype=np.float32)
        return percent_to_unit(read_percent_map(self.path(rel)))

    def read_confidence_stack(self, item: Item) -> np.ndarray:
        """All classes' confidence, ``(K, H, W)`` float32 in [0, 1]."""
        shape = self.image_size(item)
        return np.stack([self.read_confidence(item, c, shape) for c in self.classes])

    def raters(self) -> list[str]:
        """Sorted names of every rater in the dataset."""
        return sorted({r for it in self.items for r in it.raters})

    def read_rater(self, item: Item, rater: str, cls: str, shape: tuple[int, int] | None = None
                   ) -> np.ndarray:
        """One rater's map for a class as float32 in [0, 1] (binary masks give 0/1)."""
        rel = item.raters.get(rater, {}).get(cls)
        if rel is None:
            return np.zeros(shape or self.image_size(item), dtype=np.float32)
        return percent_to_unit(read_rater_map(self.path(rel)))

    def read_ignore(self, item: Item) -> np.ndarray | None:
        """The item's ignore mask (True = left out), or None."""
        if item.ignore is None:
            return None
        return read_mask(self.path(item.ignore), threshold=0)

    def read_truth(self, item: Item, cls: str) -> np.ndarray | None:
        """The true mask of a class (synthetic data), or None."""
        rel = item.truth.get(cls)
        return None if rel is None else read_mask(self.path(rel), threshold=0)

    def splits_path(self) -> Path:
        """Where the dataset's own ``splits.json`` lives (it may not exist)."""
        return self.root / SPLITS_JSON

    def clinical_path(self) -> Path:
        """Where clinical.csv lives (it may not exist)."""
        return self.root / "clinical.csv"

    def read_clinical(self) -> list[dict[str, str]]:
        """Rows of clinical.csv as dicts (empty list when absent).

        Raises:
            DatasetError: not UTF-8, no header, or a row with more or fewer cells than the
                header (naming the line).
        """
        p = self.clinical_path()
        if not p.exists():
            return []
        try:
            with p.open(newline="", encoding="utf-8") as f:
                reader = csv.DictReader(f, restkey="\0extra", restval="\0missing")
                rows = list(reader)
        except UnicodeDecodeError:
            raise DatasetError(f"{p}: not UTF-8 text; re-save the CSV as UTF-8") from None
        except csv.Error as exc:
            raise DatasetError(f"{p}: not a readable CSV ({exc}); fix the file") from None
        if reader.fieldnames is None:
            raise DatasetError(f"{p}: empty; it needs a header row (patient,day,...)")
        for n, row in enumerate(rows, 2):
            if "\0extra" in row or "\0missing" in row.values():
                raise DatasetError(f"{p}: line {n} has a different number of cells than the "
                                   f"header ({len(reader.fieldnames)}); fix that row")
        return rows

    def clinical_table(self) -> ClinicalTable:
        """``clinical.csv`` as typed rows with its schema.

        The schema is ``dataset.json``'s ``clinical_schema``, or one inferred from the values
        for a dataset written before schemas existed.

        Raises:
            DatasetError: no clinical.csv, or a value that does not fit its column.
        """
        p = self.clinical_path()
        if not p.exists():
            raise DatasetError(f"{self.root}: no clinical.csv; downstream tasks need one row "
                               "per patient-day (patient, day, targets ...)")
        raw = self.read_clinical()
        with p.open(newline="", encoding="utf-8") as f:
            header = next(csv.reader(f))
        spec = self.meta.get("clinical_schema")
        schema = (ClinicalSchema.from_json(spec, where=str(self.root / DATASET_JSON))
                  if spec is not None else ClinicalSchema.infer(header, raw))
        return ClinicalTable(schema=schema, rows=parse_rows(schema, header, raw, where=str(p)),
                             path=p)

    # ----- writing ------------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        """The dataset.json object."""
        out: dict[str, Any] = {
            "format_version": FORMAT_VERSION,
            "name": self.name,
            "classes": list(self.classes),
            "confidence_scale": [
                {"value": lv.value, "name": lv.name, "description": lv.description}
                for lv in self.scale
            ],
        }
        out.update({k: v for k, v in self.meta.items() if k not in out and k != "items"})
        out["items"] = [it.to_json() for it in self.items]
        return out

    def save(self) -> None:
        """Write dataset.json atomically."""
        atomic_write_text(self.root / DATASET_JSON, json.dumps(self.to_json(), indent=1) + "\n")


# ----- loading and validation ---------------------------------------------------------------
def _parse_scale(obj: Any, where: str) -> tuple[ConfidenceLevel, ...]:
    if obj is None:
        return DEFAULT_SCALE
    if not isinstance(obj, list) or not obj:
        raise DatasetError(f"{where}: 'confidence_scale' must be a non-empty list of levels")
    levels = []
    for i, lv in enumerate(obj):
        if not isinstance(lv, dict) or "value" not in lv:
            raise DatasetError(f"{where}: confidence_scale[{i}] needs a 'value'")
        v = lv["value"]
        if not isinstance(v, int) or not 1 <= v <= 100:
            raise DatasetError(f"{where}: confidence_scale[{i}].value={v!r}; use an integer 1..100")
        if any(x.value == v for x in levels):
            raise DatasetError(f"{where}: confidence_scale has the value {v} twice; each level "
                               "needs its own percent")
        levels.append(ConfidenceLevel(value=v, name=str(lv.get("name", v)),
                                      description=str(lv.get("description", ""))))
    return tuple(levels)


def load_dataset(root: str | os.PathLike[str], *, validate: bool = True,
                 strict: bool = False) -> Dataset:
    """Load a dataset folder and (by default) validate every file it names.

    Args:
        root: Folder holding dataset.json.
        validate: Decode every image and map and check sizes and values (once per process
            for an unchanged ``dataset.json``). With False only the JSON structure is checked.
        strict: Refuse confidence levels that are not on the confidence scale (else they
            are logged as a warning).

    Raises:
        DatasetError: with a one-line message naming the file and the fix.
    """
    root = Path(root)
    jpath = root / DATASET_JSON
    if root.is_file():
        raise DatasetError(f"{root}: is a file, not a dataset folder; give the folder that holds "
                           "dataset.json")
    if not root.is_dir():
        raise DatasetError(f"{root}: dataset folder not found")
    if not jpath.is_file():
        raise DatasetError(f"{jpath}: missing; a dataset folder needs a dataset.json "
                           "(create one with `confseg import` or `confseg synth`)")
    try:
        obj = json.loads(jpath.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{jpath}: not valid JSON (line {exc.lineno}, column {exc.colno}: "
                           f"{exc.msg}); fix the file") from None
    except UnicodeDecodeError:
        raise DatasetError(f"{jpath}: not UTF-8 text; re-save it as UTF-8 JSON") from None
    if not isinstance(obj, dict):
        raise DatasetError(f"{jpath}: top level must be a JSON object")
    for key in ("name", "classes", "items"):
        if key not in obj:
            raise DatasetError(f"{jpath}: missing required key {key!r}")
    if not isinstance(obj["classes"], list) or not all(isinstance(c, str) for c in obj["classes"]):
        raise DatasetError(f"{jpath}: 'classes' must be a list of class names")
    if not isinstance(obj["items"], list):
        raise DatasetError(f"{jpath}: 'items' must be a list")
    try:
        schema = ClassSchema(names=tuple(obj["classes"]))
    except DatasetError as exc:
        raise DatasetError(f"{jpath}: {exc}") from None
    items = [Item.from_json(o, f"{jpath}: items[{i}]") for i, o in enumerate(obj["items"])]
    ds = Dataset(
        root=root,
        name=str(obj["name"]),
        schema=schema,
        scale=_parse_scale(obj.get("confidence_scale"), str(jpath)),
        items=items,
        meta={k: v for k, v in obj.items()
              if k not in ("name", "classes", "items", "confidence_scale")},
    )
    _check_structure(ds, jpath)
    if validate:
        key = _validation_key(jpath)
        if strict or key not in _VALIDATED:
            validate_files(ds, strict=strict)
            _VALIDATED.add(key)
    return ds


# Datasets whose files were fully validated in this process, keyed by dataset.json's resolved
# path, size and modification time: a dataset is decoded once per process, not once per stage
# (train, then evaluate, then each study cell). Editing dataset.json validates it again.
_VALIDATED: set[tuple[str, int, int]] = set()


def _validation_key(jpath: Path) -> tuple[str, int, int]:
    st = jpath.stat()
    return (str(jpath.resolve()), st.st_size, st.st_mtime_ns)


def _check_structure(ds: Dataset, jpath: Path) -> None:
    seen: set[str] = set()
    root_resolved = ds.root.resolve()
    for it in ds.items:
        if it.id in seen:
            raise DatasetError(f"{jpath}: duplicate item id {it.id!r}; ids must be unique")
        seen.add(it.id)
        for label, mapping in (("confidence", it.confidence), ("truth", it.truth)):
            for cls in mapping:
                if cls not in ds.classes:
                    raise DatasetError(
                        f"{jpath}: item {it.id!r} has {label} for unknown class {cls!r}; "
                        f"add it to 'classes' {list(ds.classes)} or remove it")
        for rater, m in it.raters.items():
            for cls in m:
                if cls not in ds.classes:
                    raise DatasetError(f"{jpath}: item {it.id!r} rater {rater!r} has unknown "
                                       f"class {cls!r}; classes are {list(ds.classes)}")
        if it.image is None and it.video is None:
            raise DatasetError(f"{jpath}: item {it.id!r} has neither 'image' nor 'video'")
        if it.image is None and (it.confidence or it.raters):
            raise DatasetError(f"{jpath}: item {it.id!r} has confidence maps but no image")
        for rel in _item_paths(it):
            p = Path(rel)
            if p.is_absolute() or not (ds.root / p).resolve().is_relative_to(root_resolved):
                raise DatasetError(f"{jpath}: item {it.id!r} path {rel!r} leaves the dataset "
                                   "folder; use a path relative to it")


def _item_paths(it: Item) -> Iterable[str]:
    if it.image:
        yield it.image
    yield from it.confidence.values()
    yield from it.truth.values()
    for m in it.raters.values():
        yield from m.values()
    if it.ignore:
        yield it.ignore
    if it.video:
        yield it.video


def validate_files(ds: Dataset, *, strict: bool = False) -> None:
    """Decode every file an item names and check existence, sizes and values.

    Confidence levels that are not on the dataset's ``confidence_scale`` are logged as one
    warning (logger ``confseg``; the CLI prints it as a ``warning:`` line), or refused with
    ``strict``.

    Raises:
        DatasetError: naming the first offending file.
    """
    on_scale = {0} | {lv.value for lv in ds.scale}
    off_scale: list[tuple[str, list[int]]] = []
    for it in ds.items:
        for rel in _item_paths(it):
            if not ds.path(rel).is_file():
                raise DatasetError(f"{ds.path(rel)}: file named by item {it.id!r} is missing; "
                                   "restore it or fix dataset.json")
        if it.image is None:
            continue
        try:
            shape = read_image(ds.path(it.image)).shape[:2]
            maps: list[tuple[str, np.ndarray]] = []
            for rel in it.confidence.values():
                conf = read_percent_map(ds.path(rel))
                maps.append((rel, conf))
                extra = sorted(set(np.unique(conf).tolist()) - on_scale)
                if extra:
                    off_scale.append((rel, extra))
            for m in it.raters.values():
                maps.extend((rel, read_image(ds.path(rel))) for rel in m.values())
            for rel in list(it.truth.values()) + ([it.ignore] if it.ignore else []):
                maps.append((rel, read_image(ds.path(rel))))
        except MediaError as exc:
            raise DatasetError(f"{exc} (item {it.id!r})") from None
        for rel, arr in maps:
            if arr.shape[:2] != shape:
                raise DatasetError(
                    f"{ds.path(rel)}: size {arr.shape[1]}x{arr.shape[0]} differs from image "
                    f"{it.image} ({shape[1]}x{shape[0]}); resample the map to the image")
    if off_scale:
        rel, extra = off_scale[0]
        msg = (f"{ds.root}: {len(off_scale)} confidence map(s) hold levels that are not on the "
               f"confidence scale {sorted(on_scale - {0})} (first: {rel} has {extra[:5]}); "
               "fix the maps or the dataset's confidence_scale")
        if strict:
            raise DatasetError(msg)
        log.warning(msg)
