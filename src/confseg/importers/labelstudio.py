"""Importer for Label Studio JSON exports (polygon / brush / rectangle regions + confidence).

Source: the JSON export (a list of tasks) plus the image folder. Each task::

    {"data": {"image": "/data/upload/1/3f2a9c1e-p01_f3.png"},
     "annotations": [{"result": [
        {"id": "r1", "type": "polygonlabels", "original_width": 64, "original_height": 48,
         "value": {"points": [[x%, y%], ...], "polygonlabels": ["b_line"]}},
        {"id": "r1", "type": "rating", "value": {"rating": 3}},
        {"id": "r2", "type": "brushlabels",
         "value": {"format": "rle", "rle": [...], "brushlabels": ["pleura"]}},
        {"id": "r2", "type": "number", "value": {"number": 60}}]}]}

A region's confidence comes from a ``rating`` (1..rating_max -> 100*r/rating_max) or
``number`` (0..100) result with the same id; without one it is 100. Later regions
overwrite earlier ones of the same class where they overlap.
"""

from __future__ import annotations

import json
import math
import re
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

import numpy as np

from confseg.data import DatasetWriter
from confseg.errors import ImportLayoutError, MediaError
from confseg.importers._brush_rle import decode_brush_rle
from confseg.importers._common import (
    PathLike,
    ProgressFn,
    as_int,
    as_names,
    check_classes,
    check_paths,
    compile_regex,
    fill_polygon,
    finish,
    inside,
    patient_from,
    safe_id,
    tick,
)
from confseg.io.images import check_pixels, image_shape

LAYOUT = "labelstudio"
_GEOMETRY = {
    "polygonlabels": "polygon",
    "polygon": "polygon",
    "brushlabels": "brush",
    "brush": "brush",
    "rectanglelabels": "rectangle",
    "rectangle": "rectangle",
}
_UPLOAD_PREFIX = re.compile(r"^[0-9a-f]{8}-")


# ----- parsing ------------------------------------------------------------------------------
@dataclass
class _Region:
    kind: str
    label: str
    value: dict[str, Any]
    size: tuple[int, int] | None  # (H, W) from original_height/width
    where: str = ""  # names the task and region in messages
    confidence: int = 100


@dataclass
class _Task:
    ref: str
    file: Path
    regions: list[_Region] = field(default_factory=list)


def _basename(ref: str) -> str:
    url = urlparse(ref)
    query = parse_qs(url.query)
    path = query["d"][0] if "d" in query else url.path
    return unquote(path).replace("\\", "/").rsplit("/", 1)[-1]


def _find_image(images: Path, ref: str, where: str) -> Path:
    # Label Studio URLs (/data/upload/1/<prefix>-x.png, /data/local-files/?d=dir/x.png,
    # http://...) are matched by base name only; the name must still stay inside images=
    base = _basename(ref)
    for cand in (base, _UPLOAD_PREFIX.sub("", base)):
        if cand and (path := inside(images, cand, what=f"{where} data image {ref!r}")).is_file():
            return path
    raise ImportLayoutError(
        f"{images / base}: image missing ({where} names {ref!r}); point "
        "images= at the folder holding the task images"
    )


def _region_confidence(res: dict[str, Any], rating_max: int, where: str) -> int | None:
    val = res.get("value") or {}
    if res.get("type") == "rating" and "rating" in val:
        r = val["rating"]
        if not isinstance(r, int | float) or isinstance(r, bool) or not 0 <= r <= rating_max:
            raise ImportLayoutError(
                f"{where}: rating {r!r}; expected 0..{rating_max} "
                "(set rating_max for another scale)"
            )
        return round(100 * r / rating_max)
    if res.get("type") == "number" and "number" in val:
        n = val["number"]
        if not isinstance(n, int | float) or isinstance(n, bool) or not 0 <= n <= 100:
            raise ImportLayoutError(f"{where}: number {n!r}; confidence must lie in 0..100")
        return round(n)
    return None


def _size(res: dict[str, Any], where: str) -> tuple[int, int] | None:
    """``(H, W)`` from a result's original_height/width, checked against the pixel limit."""
    if "original_height" not in res or "original_width" not in res:
        return None
    h, w = res["original_height"], res["original_width"]
    if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in (h, w)) or not (
        all(math.isfinite(v) and v == int(v) and v >= 1 for v in (h, w))
    ):
        raise ImportLayoutError(
            f"{where}: original_width/height {w!r}/{h!r} must be positive integers"
        )
    try:
        check_pixels(int(h), int(w), f"{where} (original_width x original_height)")
    except MediaError as exc:
        raise ImportLayoutError(str(exc)) from None
    return int(h), int(w)


def _labels(val: dict[str, Any], key: str, where: str) -> list[str]:
    """The label names of a result (``value[key]``): a list of strings."""
    labels = val.get(key)
    if labels is None:
        return []
    if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
        raise ImportLayoutError(
            f"{where}: value.{key} = {labels!r}; labels must be a list of label names "
            "(strings); re-export from Label Studio"
        )
    return labels


def _parse_task(
    task: Any, k: int, src: Path, images: Path, image_key: str, rating_max: int
) -> _Task | None:
    where = f"{src}: task #{k}"
    if not isinstance(task, dict) or not isinstance(task.get("data"), dict):
        raise ImportLayoutError(
            f"{where}: not a task object with 'data'; export from Label "
            "Studio as JSON (not JSON-MIN)"
        )
    if "annotations" not in task:
        raise ImportLayoutError(
            f"{where}: no 'annotations' key; export from Label Studio as JSON (not JSON-MIN)"
        )
    anns = task["annotations"] or []
    if not isinstance(anns, list) or not all(isinstance(a, dict) for a in anns):
        raise ImportLayoutError(
            f"{where}: 'annotations' must be a list of annotation objects; export from "
            "Label Studio as JSON (not JSON-MIN)"
        )
    ref = task["data"].get(image_key)
    if not isinstance(ref, str):
        raise ImportLayoutError(
            f"{where}: data.{image_key} missing; pass image_key= with the "
            "name of the task's image field"
        )
    done = [a for a in anns if not a.get("was_cancelled")]
    if not done:
        return None
    out = _Task(ref=ref, file=_find_image(images, ref, where))
    results = done[0].get("result") or []
    if not isinstance(results, list) or not all(isinstance(r, dict) for r in results):
        raise ImportLayoutError(
            f"{where}: annotation 'result' must be a list of region objects; re-export it"
        )
    regions: list[tuple[str, _Region]] = []
    labels_of: dict[str, list[str]] = {}
    conf_of: dict[str, int] = {}
    for res in results:
        rtype, rid, val = res.get("type", ""), str(res.get("id", "")), res.get("value") or {}
        rwhere = f"{where} region {rid!r}"
        if not isinstance(rtype, str) or not isinstance(val, dict):
            raise ImportLayoutError(
                f"{rwhere}: 'type' must be a string and 'value' an object (got "
                f"{type(rtype).__name__} and {type(val).__name__}); re-export it"
            )
        conf = _region_confidence(res, rating_max, rwhere)
        if conf is not None:
            conf_of[rid] = conf
        elif rtype == "labels":
            labels_of[rid] = _labels(val, "labels", rwhere)
        elif rtype in _GEOMETRY:
            size = _size(res, rwhere)
            labels = _labels(val, rtype, rwhere) if rtype.endswith("labels") else []
            for lab in labels or [""]:
                regions.append(
                    (rid, _Region(kind=_GEOMETRY[rtype], label=lab, value=val, size=size,
                                  where=rwhere))
                )
    for rid, reg in regions:
        if not reg.label and labels_of.get(rid):
            reg.label = labels_of[rid][0]
        if not reg.label:
            raise ImportLayoutError(
                f"{where} region {rid!r}: {reg.kind} region without a label (no "
                "value.<type>labels and no 'labels' result with its id); label every region"
            )
        reg.confidence = conf_of.get(rid, 100)
        out.regions.append(reg)
    return out


def _raster(reg: _Region, shape: tuple[int, int], where: str) -> np.ndarray:
    h, w = shape
    v = reg.value
    try:
        if reg.kind == "polygon":
            pts = [(float(x) * w / 100, float(y) * h / 100) for x, y in v["points"]]
            if len(pts) < 3:
                raise ValueError("a polygon needs at least 3 points")
            return fill_polygon(shape, _finite(pts))
        if reg.kind == "rectangle":
            x, y = float(v["x"]) * w / 100, float(v["y"]) * h / 100
            rw, rh = float(v["width"]) * w / 100, float(v["height"]) * h / 100
            rot = math.radians(float(v.get("rotation", 0) or 0))
            c, s = math.cos(rot), math.sin(rot)
            pts = [
                (x + dx * c - dy * s, y + dx * s + dy * c)
                for dx, dy in ((0, 0), (rw, 0), (rw, rh), (0, rh))
            ]
            return fill_polygon(shape, _finite(pts))
        if v.get("format", "rle") != "rle":
            raise ValueError(f"brush format {v.get('format')!r}; only 'rle' is supported")
        flat = decode_brush_rle(v["rle"], expected=h * w * 4)  # checked before allocating
        return flat.reshape(h, w, 4)[:, :, 3] > 0
    except KeyError as exc:
        raise ImportLayoutError(
            f"{where}: {reg.kind} region lacks value.{exc.args[0]}; re-export it"
        ) from None
    except (TypeError, ValueError, OverflowError) as exc:
        raise ImportLayoutError(f"{where}: cannot read {reg.kind} region ({exc})") from None


def _finite(pts: list[tuple[float, float]]) -> list[tuple[float, float]]:
    if not all(math.isfinite(c) for p in pts for c in p):
        raise ValueError("coordinates must be finite numbers")
    return pts


def _load_tasks(src: Path) -> tuple[Path, list[Any]]:
    path = src
    if src.is_dir():
        found = sorted(src.glob("*.json"))
        if len(found) != 1:
            raise ImportLayoutError(
                f"{src}: expected one Label Studio JSON export in the folder, "
                f"found {len(found)}; pass the JSON file itself"
            )
        path = found[0]
    try:
        tasks = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise ImportLayoutError(f"{path}: not valid JSON ({exc}); re-export it") from None
    if not isinstance(tasks, list):
        raise ImportLayoutError(
            f"{path}: top level must be a list of tasks (Label Studio JSON export)"
        )
    return path, tasks


def import_labelstudio(
    src: PathLike,
    dst: PathLike,
    *,
    overwrite: bool = False,
    progress: ProgressFn | None = None,
    images: PathLike | None = None,
    classes: str | Iterable[str] | None = None,
    patient_regex: str | None = None,
    image_key: str = "image",
    rating_max: int = 5,
    name: str | None = None,
) -> Path:
    """Import a Label Studio JSON export into a native dataset.

    Args:
        src: The JSON export (or a folder holding exactly one .json).
        dst: New dataset folder.
        overwrite: Replace ``dst`` if it exists.
        progress: Called as ``progress(done, total)`` after each task.
        images: Folder holding the task images, matched by base name (an upload prefix
            ``xxxxxxxx-`` is also tried without). Required.
        classes: Classes to import, in order (default: labels in order of appearance).
        patient_regex: Regex applied to the image file name for the patient (named group
            ``patient``, else group 1, else the match). Default: the image stem.
        image_key: The task data field holding the image.
        rating_max: Rating that means 100% (Label Studio's Rating default is 5 stars).
        name: Dataset name (default: the JSON file's stem).

    Returns:
        The dataset folder.
    """
    src_p, dst_p = check_paths(src, dst, LAYOUT)
    if images is None or not Path(images).is_dir():
        raise ImportLayoutError(
            f"{images}: image folder missing; pass images=DIR (the folder holding the task images)"
        )
    rmax = as_int(rating_max, "rating_max", 1, 1000)
    regex = compile_regex(patient_regex)
    path, raw = _load_tasks(src_p)
    parsed = [_parse_task(t, k, path, Path(images), image_key, rmax) for k, t in enumerate(raw)]
    tasks = [t for t in parsed if t is not None]
    if not tasks:
        raise ImportLayoutError(f"{path}: no task has a (non-cancelled) annotation")
    skipped = len(raw) - len(tasks)
    labels = list(dict.fromkeys(r.label for t in tasks for r in t.regions if r.label))
    names = list(check_classes(as_names(classes, "classes") or labels or ["foreground"], "classes"))
    ids = [safe_id(t.file.stem) for t in tasks]
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise ImportLayoutError(f"{path}: two tasks use the image {dup!r}; keep one task per image")
    total = len(tasks)
    meta = {"source": {"layout": LAYOUT, "path": str(path.resolve())}}
    tick(progress, 0, total)
    with DatasetWriter(
        dst_p, name=name or path.stem, classes=names, meta=meta, overwrite=overwrite
    ) as w:
        for done, (task, item_id) in enumerate(zip(tasks, ids, strict=True), 1):
            shape = image_shape(task.file)
            maps: dict[str, np.ndarray] = {}
            for k, reg in enumerate(task.regions):
                where = reg.where or f"{path}: task image {task.ref!r} region #{k}"
                if reg.size is not None and reg.size != shape:
                    raise ImportLayoutError(
                        f"{task.file}: size {shape[1]}x{shape[0]} differs from the export "
                        f"({reg.size[1]}x{reg.size[0]}); use the images that were annotated"
                    )
                if reg.label not in names:
                    continue
                m = maps.setdefault(reg.label, np.zeros(shape, dtype=np.uint8))
                m[_raster(reg, shape, where)] = reg.confidence
            w.add(
                item_id=item_id,
                patient=patient_from(task.file.name, regex) if regex else task.file.stem,
                view="",
                day=0,
                image_file=task.file,
                confidence={c: maps[c] for c in names if c in maps},
                source_ref=task.ref,
            )
            tick(progress, done, total)
        finish(w)
    if skipped:
        warnings.warn(
            f"{path}: {skipped} task(s) without a completed annotation were left out", stacklevel=2
        )
    return dst_p
