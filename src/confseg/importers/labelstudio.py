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
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

import numpy as np

from confseg.data import DatasetWriter
from confseg.errors import ImportLayoutError
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
    patient_from,
    safe_id,
    tick,
)
from confseg.io.images import image_shape

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


# ----- Label Studio brush RLE (port of label-studio-converter brush.decode_rle) ------------
class _BitStream:
    """Reads big-endian unsigned integers of any bit width from a byte list."""

    def __init__(self, data: Sequence[int]) -> None:
        raw = np.asarray(data, dtype=np.int64)
        if raw.size and (raw.min() < 0 or raw.max() > 255):
            raise ValueError("RLE bytes must lie in 0..255")
        bits = np.unpackbits(raw.astype(np.uint8))
        self.bits = (bits + ord("0")).tobytes().decode("ascii")
        self.i = 0

    def read(self, size: int) -> int:
        if self.i + size > len(self.bits):
            raise ValueError("RLE stream ends early")
        out = int(self.bits[self.i : self.i + size], 2)
        self.i += size
        return out


def decode_brush_rle(rle: Sequence[int]) -> np.ndarray:
    """Decode Label Studio's brush RLE to the flat array it encodes (RGBA, row-major).

    The stream (rle-pack by thi.ng): 32 bits value count, 5 bits word size - 1, four
    4-bit run-length widths - 1; then blocks of: 1 bit run flag, 2 bits index into the
    widths, that many bits of length - 1, then one word repeated (run) or that many
    words (literals).

    Raises:
        ValueError: the stream is malformed.
    """
    inp = _BitStream(rle)
    num = inp.read(32)
    word_size = inp.read(5) + 1
    rle_sizes = [inp.read(4) + 1 for _ in range(4)]
    dtype = np.uint8 if word_size < 9 else np.uint16 if word_size < 17 else np.uint32
    out = np.zeros(num, dtype=dtype)
    i = 0
    while i < num:
        x = inp.read(1)
        j = i + 1 + inp.read(rle_sizes[inp.read(2)])
        if x:
            out[i:j] = inp.read(word_size)
            i = j
        else:
            if j > num:
                raise ValueError(f"literal block runs past the {num} values")
            while i < j:
                out[i] = inp.read(word_size)
                i += 1
    return out


# ----- parsing ------------------------------------------------------------------------------
@dataclass
class _Region:
    kind: str
    label: str
    value: dict[str, Any]
    size: tuple[int, int] | None  # (H, W) from original_height/width
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
    base = _basename(ref)
    for cand in (base, _UPLOAD_PREFIX.sub("", base)):
        if cand and (images / cand).is_file():
            return images / cand
    raise ImportLayoutError(
        f"{images / base}: image missing ({where} names {ref!r}); point "
        "images= at the folder holding the task images"
    )


def _region_confidence(res: dict[str, Any], rating_max: int, where: str) -> int | None:
    val = res.get("value") or {}
    if res.get("type") == "rating" and "rating" in val:
        r = val["rating"]
        if not isinstance(r, int | float) or not 0 <= r <= rating_max:
            raise ImportLayoutError(
                f"{where}: rating {r!r}; expected 0..{rating_max} "
                "(set rating_max for another scale)"
            )
        return round(100 * r / rating_max)
    if res.get("type") == "number" and "number" in val:
        n = val["number"]
        if not isinstance(n, int | float) or not 0 <= n <= 100:
            raise ImportLayoutError(f"{where}: number {n!r}; confidence must lie in 0..100")
        return round(n)
    return None


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
    ref = task["data"].get(image_key)
    if not isinstance(ref, str):
        raise ImportLayoutError(
            f"{where}: data.{image_key} missing; pass image_key= with the "
            "name of the task's image field"
        )
    done = [a for a in task["annotations"] or [] if not a.get("was_cancelled")]
    if not done:
        return None
    out = _Task(ref=ref, file=_find_image(images, ref, where))
    regions: list[tuple[str, _Region]] = []
    labels_of: dict[str, list[str]] = {}
    conf_of: dict[str, int] = {}
    for res in done[0].get("result") or []:
        rtype, rid, val = res.get("type", ""), str(res.get("id", "")), res.get("value") or {}
        conf = _region_confidence(res, rating_max, f"{where} region {rid!r}")
        if conf is not None:
            conf_of[rid] = conf
        elif rtype == "labels":
            labels_of[rid] = list(val.get("labels") or [])
        elif rtype in _GEOMETRY:
            size = None
            if "original_height" in res and "original_width" in res:
                try:
                    size = (int(res["original_height"]), int(res["original_width"]))
                except (TypeError, ValueError):
                    raise ImportLayoutError(
                        f"{where} region {rid!r}: original_width/height must be integers"
                    ) from None
            labels = list(val.get(rtype) or []) if rtype.endswith("labels") else []
            for lab in labels or [""]:
                regions.append(
                    (rid, _Region(kind=_GEOMETRY[rtype], label=lab, value=val, size=size))
                )
    for rid, reg in regions:
        if not reg.label and labels_of.get(rid):
            reg.label = labels_of[rid][0]
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
            return fill_polygon(shape, pts)
        if reg.kind == "rectangle":
            x, y = float(v["x"]) * w / 100, float(v["y"]) * h / 100
            rw, rh = float(v["width"]) * w / 100, float(v["height"]) * h / 100
            rot = math.radians(float(v.get("rotation", 0) or 0))
            c, s = math.cos(rot), math.sin(rot)
            pts = [
                (x + dx * c - dy * s, y + dx * s + dy * c)
                for dx, dy in ((0, 0), (rw, 0), (rw, rh), (0, rh))
            ]
            return fill_polygon(shape, pts)
        if v.get("format", "rle") != "rle":
            raise ValueError(f"brush format {v.get('format')!r}; only 'rle' is supported")
        flat = decode_brush_rle(v["rle"])
        if flat.size != h * w * 4:
            raise ValueError(f"brush RLE holds {flat.size} values, the image needs {h}x{w}x4")
        return flat.reshape(h, w, 4)[:, :, 3] > 0
    except (KeyError, TypeError, ValueError) as exc:
        raise ImportLayoutError(f"{where}: cannot read {reg.kind} region ({exc})") from None


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
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
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
                where = f"{path}: task image {task.ref!r} region #{k}"
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
