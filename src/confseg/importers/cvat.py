"""Importer for CVAT "CVAT for images 1.1" XML exports with a per-shape confidence attribute.

Source: ``annotations.xml`` (or the folder holding it) plus the image folder::

    <annotations>
      <meta>... <labels><label><name>b_line</name>...</label></labels> ...</meta>
      <image id="0" name="p01_f3.png" width="64" height="48">
        <polygon label="b_line" points="x1,y1;x2,y2;..." z_order="0">
          <attribute name="confidence">60</attribute>
        </polygon>
        <mask label="pleura" rle="n0, n1, n0, ..." left="3" top="5" width="20" height="4"/>
        <box label="..." xtl="" ytl="" xbr="" ybr="" rotation="0"/>
      </image>
    </annotations>

Shapes are painted per class in (z_order, document order); a later shape overwrites
an earlier one of the same class where they overlap.
"""

from __future__ import annotations

import math
import warnings
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from confseg.data import DatasetWriter
from confseg.errors import ImportLayoutError, MediaError
from confseg.importers._common import (
    PathLike,
    ProgressFn,
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

LAYOUT = "cvat"
SHAPES = ("polygon", "box", "mask")
_SKIPPED = ("polyline", "points", "ellipse", "cuboid", "skeleton")


@dataclass
class _Shape:
    kind: str
    label: str
    confidence: int
    z_order: int
    attrs: dict[str, str]
    where: str = ""  # names the image and shape in messages


@dataclass
class _Image:
    name: str
    file: Path
    width: int
    height: int
    shapes: list[_Shape] = field(default_factory=list)


def decode_cvat_rle(counts: Iterable[int], width: int, height: int) -> np.ndarray:
    """Decode CVAT's mask RLE: alternating 0/1 run lengths (starting with 0), row-major.

    Args:
        counts: Run lengths.
        width: Box width.
        height: Box height.

    Returns:
        ``(height, width)`` bool mask.

    Raises:
        ValueError: runs are negative or cover more than the box.
    """
    try:
        runs = np.asarray(list(counts), dtype=np.int64)
    except OverflowError:
        raise ValueError("a run length is too large") from None
    total = width * height
    if runs.size and (runs.min() < 0 or runs.sum() > total):
        raise ValueError(f"RLE covers {int(runs.sum())} pixels, the box has {total}")
    values = (np.arange(runs.size) % 2).astype(bool)
    flat = np.zeros(total, dtype=bool)
    flat[: int(runs.sum())] = np.repeat(values, runs)
    return flat.reshape(height, width)


def _confidence(el: ET.Element, attr: str, where: str) -> int:
    for a in el.findall("attribute"):
        if a.get("name") == attr:
            text = (a.text or "").strip()
            try:
                val = float(text)
            except ValueError:
                val = -1.0
            if not 0 <= val <= 100:
                raise ImportLayoutError(f"{where}: {attr}={text!r}; use a number 0..100")
            return round(val)
    return 100


def _find_image(images: Path, name: str, xml: Path) -> Path:
    what = f"{xml}: <image name={name!r}>"
    # the name as given, then its base name (images exported flat); both must stay inside
    first = inside(images, name, what=what)
    for cand in (first, inside(images, first.name, what=what)):
        if cand.is_file():
            return cand
    raise ImportLayoutError(
        f"{images / name}: image missing; {xml} names it; point images= at "
        "the folder holding the task's images"
    )


def _parse(xml: Path, images: Path, attr: str) -> tuple[list[str], list[_Image], int]:
    try:
        root = ET.parse(xml).getroot()
    except (ET.ParseError, OSError, ValueError) as exc:
        raise ImportLayoutError(
            f"{xml}: not readable XML ({' '.join(str(exc).split())}); export the task as "
            "'CVAT for images 1.1'"
        ) from None
    meta = root.find("meta")
    labels = [
        n
        for lab in (meta.iter("label") if meta is not None else [])
        if (n := (lab.findtext("name") or "").strip())
    ]
    imgs = root.findall("image")
    if not imgs:
        kind = "'CVAT for video' tracks" if root.find("track") is not None else "no <image>"
        raise ImportLayoutError(
            f"{xml}: {kind}; the {LAYOUT} layout expects a 'CVAT for "
            "images 1.1' export with <image> elements"
        )
    out, skipped, seen = [], 0, set()
    for el in imgs:
        name = el.get("name") or ""
        try:
            width, height = int(el.get("width", "")), int(el.get("height", ""))
            if width < 1 or height < 1:
                raise ValueError("not positive")
        except ValueError:
            raise ImportLayoutError(
                f"{xml}: <image name={name!r}> needs positive integer width and height"
            ) from None
        _check_size(height, width, f"{xml}: <image name={name!r}>")
        if name in seen:
            raise ImportLayoutError(f"{xml}: image {name!r} appears twice; merge its shapes")
        seen.add(name)
        img = _Image(name=name, file=_find_image(images, name, xml), width=width, height=height)
        for i, sh in enumerate(el):
            if sh.tag in _SKIPPED:
                skipped += 1
            if sh.tag not in SHAPES:
                continue
            label = sh.get("label") or ""
            if label and label not in labels:
                labels.append(label)
            where = f"{xml}: image {name!r} {sh.tag} #{i}"
            if sh.tag == "mask":
                _mask_box(dict(sh.attrib), where)  # refuse a huge box before anything is written
            img.shapes.append(
                _Shape(
                    kind=sh.tag,
                    label=label,
                    confidence=_confidence(sh, attr, where),
                    z_order=_z_order(sh, where),
                    attrs=dict(sh.attrib),
                    where=where,
                )
            )
        img.shapes.sort(key=lambda s: s.z_order)  # stable: document order within a z level
        out.append(img)
    return labels, out, skipped


def _check_size(h: int, w: int, where: str) -> None:
    """The pixel limit of confseg.io.images, before any array of this size is allocated."""
    try:
        check_pixels(h, w, where)
    except MediaError as exc:
        raise ImportLayoutError(str(exc)) from None


def _z_order(el: ET.Element, where: str) -> int:
    try:
        return int(float(el.get("z_order", "0") or 0))
    except (ValueError, OverflowError):
        raise ImportLayoutError(f"{where}: z_order={el.get('z_order')!r}; use an integer") from None


def _floats(attrs: dict[str, str], keys: Iterable[str], where: str) -> list[float]:
    keys = list(keys)
    try:
        out = [float(attrs[k]) for k in keys]
    except (KeyError, ValueError):
        out = []
    if len(out) != len(keys) or not all(math.isfinite(v) for v in out):
        raise ImportLayoutError(
            f"{where}: needs finite numeric {', '.join(keys)} (got "
            f"{ {k: attrs.get(k) for k in keys} }); fix the export"
        )
    return out


def _mask_box(attrs: dict[str, str], where: str) -> tuple[int, int, int, int]:
    """``(left, top, width, height)`` of a ``<mask>``, its size checked before allocating."""
    left, top, w, h = (int(v) for v in _floats(attrs, ("left", "top", "width", "height"), where))
    if w < 1 or h < 1:
        raise ImportLayoutError(f"{where}: mask width={w} height={h}; both must be positive")
    _check_size(h, w, f"{where} (<mask> width x height)")
    return left, top, w, h


def _raster(sh: _Shape, shape: tuple[int, int], where: str) -> np.ndarray:
    a = sh.attrs
    if sh.kind == "polygon":
        try:
            pts = [tuple(float(v) for v in p.split(",")) for p in a.get("points", "").split(";")]
        except ValueError:
            pts = []
        if len(pts) < 3 or any(len(p) != 2 or not all(map(math.isfinite, p)) for p in pts):
            raise ImportLayoutError(
                f"{where}: points={a.get('points')!r}; a polygon needs at "
                "least 3 'x,y' points separated by ';'"
            )
        return fill_polygon(shape, pts)  # type: ignore[arg-type]
    if sh.kind == "box":
        x0, y0, x1, y1 = _floats(a, ("xtl", "ytl", "xbr", "ybr"), where)
        (rot,) = _floats({"rotation": a.get("rotation", "0") or "0"}, ("rotation",), where)
        rot = math.radians(rot)
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        c, s = math.cos(rot), math.sin(rot)
        pts = [
            (cx + (x - cx) * c - (y - cy) * s, cy + (x - cx) * s + (y - cy) * c)
            for x, y in ((x0, y0), (x1, y0), (x1, y1), (x0, y1))
        ]
        return fill_polygon(shape, pts)
    left, top, w, h = _mask_box(a, where)
    try:
        box = decode_cvat_rle(
            (int(v) for v in a.get("rle", "").replace(" ", "").split(",") if v), w, h
        )
    except ValueError as exc:
        raise ImportLayoutError(f"{where}: bad mask rle ({exc})") from None
    out = np.zeros(shape, dtype=bool)
    y0, x0 = max(top, 0), max(left, 0)
    y1, x1 = min(top + h, shape[0]), min(left + w, shape[1])
    if y1 > y0 and x1 > x0:
        out[y0:y1, x0:x1] = box[y0 - top : y1 - top, x0 - left : x1 - left]
    return out


def import_cvat(
    src: PathLike,
    dst: PathLike,
    *,
    overwrite: bool = False,
    progress: ProgressFn | None = None,
    images: PathLike | None = None,
    classes: str | Iterable[str] | None = None,
    patient_regex: str | None = None,
    confidence_attribute: str = "confidence",
    name: str | None = None,
) -> Path:
    """Import a CVAT for images 1.1 XML export into a native dataset.

    Args:
        src: ``annotations.xml`` or the folder holding it.
        dst: New dataset folder.
        overwrite: Replace ``dst`` if it exists.
        progress: Called as ``progress(done, total)`` after each image.
        images: Folder holding the images (by the XML's image name, or its base name).
            Default: ``images/`` beside the XML when it exists.
        classes: Classes to import, in order (default: the task's labels); shapes of other
            labels are left out.
        patient_regex: Regex applied to the image name for the patient (named group
            ``patient``, else group 1, else the match). Default: the image stem.
        confidence_attribute: Name of the shape attribute holding 0..100 (missing: 100).
        name: Dataset name (default: the XML's folder name).

    Returns:
        The dataset folder.
    """
    src_p, dst_p = check_paths(src, dst, LAYOUT)
    xml = src_p / "annotations.xml" if src_p.is_dir() else src_p
    if not xml.is_file():
        raise ImportLayoutError(
            f"{xml}: file missing; the {LAYOUT} layout expects a CVAT for "
            "images 1.1 annotations.xml"
        )
    img_dir = Path(images) if images is not None else xml.parent / "images"
    if not img_dir.is_dir():
        raise ImportLayoutError(
            f"{img_dir}: image folder missing; pass images=DIR (the folder "
            "holding the task's images)"
        )
    regex = compile_regex(patient_regex)
    labels, imgs, skipped = _parse(xml, img_dir, confidence_attribute)
    names = list(check_classes(as_names(classes, "classes") or labels or ["foreground"], "classes"))
    plan = []
    for img in imgs:
        stem = img.name.rsplit(".", 1)[0] if "." in Path(img.name).name else img.name
        patient = patient_from(img.name, regex) if regex else Path(stem).name
        plan.append((img, safe_id(stem), patient))
    ids = [p[1] for p in plan]
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise ImportLayoutError(f"{xml}: two images map to item id {dup!r}; rename one")
    total = len(plan)
    meta = {"source": {"layout": LAYOUT, "path": str(xml.resolve())}}
    tick(progress, 0, total)
    with DatasetWriter(
        dst_p, name=name or xml.resolve().parent.name, classes=names, meta=meta, overwrite=overwrite
    ) as w:
        for done, (img, item_id, patient) in enumerate(plan, 1):
            shape = image_shape(img.file)
            if shape != (img.height, img.width):
                raise ImportLayoutError(
                    f"{img.file}: size {shape[1]}x{shape[0]} differs from {xml.name} "
                    f"({img.width}x{img.height}); use the images the task was annotated on"
                )
            maps: dict[str, np.ndarray] = {}
            for k, sh in enumerate(img.shapes):
                if sh.label not in names:
                    continue
                m = maps.setdefault(sh.label, np.zeros(shape, dtype=np.uint8))
                where = sh.where or f"{xml}: image {img.name!r} shape #{k}"
                m[_raster(sh, shape, where)] = sh.confidence
            w.add(
                item_id=item_id,
                patient=patient,
                view="",
                day=0,
                image_file=img.file,
                confidence={c: maps[c] for c in names if c in maps},
                source_name=img.name,
            )
            tick(progress, done, total)
        finish(w)
    if skipped:
        warnings.warn(
            f"{xml}: {skipped} shape(s) of unsupported kinds (polyline, points, "
            "ellipse, cuboid, skeleton) were left out",
            stacklevel=2,
        )
    return dst_p
