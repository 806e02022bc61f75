"""Importer for the CS541 lung ultrasound layout (JPEG frames + per-class JPEG masks).

Source layout::

    SRC/image/<subject>-<L|R>-<n>-V-frame<k>.jpg
    SRC/mask/<class>/<subject>-<L|R>-<n>-V-frame<k>-<class>.jpg

A missing mask file means the class is absent in that frame (no confidence entry).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from confseg.data import DatasetWriter
from confseg.errors import ImportLayoutError
from confseg.importers._common import (
    BINARY_SOURCE_NOTE,
    PathLike,
    ProgressFn,
    as_int,
    as_names,
    check_classes,
    check_paths,
    check_size,
    finish,
    inside,
    natural_key,
    require_dir,
    tick,
    visible,
)
from confseg.io.images import image_shape, read_mask

LAYOUT = "lus-cs541"
ALL_CLASSES = ("pleural_line", "rib_shadow", "rib_line")
DEFAULT_CLASSES = ("pleural_line", "rib_shadow")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
_NAME_RE = re.compile(r"^(?P<subject>.+?)-(?P<side>[LR])-(?P<clip>\d+)-V-frame(?P<frame>\d+)$")
_EXPECT_NAME = "<subject>-<L|R>-<n>-V-frame<k>.jpg"


@dataclass
class _Frame:
    stem: str
    image: Path
    subject: str
    view: str
    frame: int
    masks: dict[str, Path] = field(default_factory=dict)


def _checked(src: Path, p: Path) -> Path:
    """A file of the source listing, refused if a link leads out of ``src``."""
    return inside(src, p.relative_to(src), what=f"{LAYOUT} source file {p}")


def _scan_images(src: Path, folder: Path) -> dict[str, _Frame]:
    frames: dict[str, _Frame] = {}
    for p in visible(folder):
        p = _checked(src, p)
        m = _NAME_RE.match(p.stem)
        if not p.is_file() or p.suffix.lower() not in IMAGE_SUFFIXES or m is None:
            raise ImportLayoutError(
                f"{p}: unexpected file; the {LAYOUT} layout expects image/{_EXPECT_NAME}"
            )
        frames[p.stem] = _Frame(
            stem=p.stem,
            image=p,
            subject=m["subject"],
            view=f"{m['side']}-{m['clip']}",
            frame=int(m["frame"]),
        )
    if not frames:
        raise ImportLayoutError(
            f"{folder}: no images; the {LAYOUT} layout expects image/{_EXPECT_NAME}"
        )
    return frames


def _scan_masks(src: Path, folder: Path, cls: str, frames: dict[str, _Frame]) -> None:
    suffix = f"-{cls}"
    for p in visible(folder):
        p = _checked(src, p)
        stem = p.stem[: -len(suffix)] if p.stem.endswith(suffix) else None
        if not p.is_file() or p.suffix.lower() not in IMAGE_SUFFIXES or stem is None:
            raise ImportLayoutError(
                f"{p}: unexpected file; the {LAYOUT} layout expects "
                f"mask/{cls}/<image stem>-{cls}.jpg"
            )
        if stem not in frames:
            raise ImportLayoutError(f"{p}: mask without an image; expected image/{stem}.jpg")
        frames[stem].masks[cls] = p


def import_lus_cs541(
    src: PathLike,
    dst: PathLike,
    *,
    overwrite: bool = False,
    progress: ProgressFn | None = None,
    classes: str | Iterable[str] | None = None,
    threshold: int = 127,
    name: str | None = None,
) -> Path:
    """Import the CS541 LUS layout into a native dataset.

    Args:
        src: Folder holding ``image/`` and ``mask/<class>/``.
        dst: New dataset folder.
        overwrite: Replace ``dst`` if it exists.
        progress: Called as ``progress(done, total)`` after each frame.
        classes: Classes to import, in order (list or comma-separated string); each
            needs a ``mask/<class>/`` folder. Default ``pleural_line, rib_shadow``.
        threshold: Mask grey values strictly above it are foreground (JPEG is lossy).
        name: Dataset name (default: the source folder's name).

    Returns:
        The dataset folder.
    """
    src_p, dst_p = check_paths(src, dst, LAYOUT)
    names = list(check_classes(as_names(classes, "classes") or DEFAULT_CLASSES, "classes"))
    thr = as_int(threshold, "threshold", 0, 254)
    frames = _scan_images(src_p, require_dir(src_p / "image", LAYOUT, f"image/{_EXPECT_NAME}"))
    mask_root = require_dir(src_p / "mask", LAYOUT, "mask/<class>/ folders")
    for cls in names:
        _scan_masks(
            src_p,
            require_dir(
                mask_root / cls, LAYOUT, f"mask/{cls}/<image stem>-{cls}.jpg (class {cls!r})"
            ),
            cls,
            frames,
        )
    order = sorted(
        frames.values(), key=lambda f: (natural_key(f.subject), natural_key(f.view), f.frame)
    )
    total = len(order)
    meta = {"source": {"layout": LAYOUT, "path": str(src_p.resolve()),
                       "confidence": BINARY_SOURCE_NOTE}}
    tick(progress, 0, total)
    with DatasetWriter(
        dst_p,
        name=name or src_p.resolve().name,
        classes=names,
        meta=meta,
        overwrite=overwrite,
    ) as w:
        for done, fr in enumerate(order, 1):
            shape = image_shape(fr.image)
            conf = {}
            for cls in names:
                if cls in fr.masks:
                    mask = read_mask(fr.masks[cls], thr)
                    check_size(shape, mask.shape, fr.masks[cls], fr.image)
                    conf[cls] = mask
            w.add(
                item_id=fr.stem,
                patient=fr.subject,
                view=fr.view,
                day=0,
                image_file=fr.image,
                confidence=conf,
                frame=fr.frame,
            )
            tick(progress, done, total)
        finish(w)
    return dst_p
