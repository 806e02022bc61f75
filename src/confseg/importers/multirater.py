"""Importer for multi-rater layouts (e.g. QUBIQ): one folder per case, N binary rater masks.

Source layout::

    SRC/<case>/image.png        (or the single file that is not a rater mask)
    SRC/<case>/seg01.png ... segNN.png   binary masks, 0/255 or 0/1

Confidence = fraction of raters who marked a pixel; each rater's mask is kept
under ``raters/``.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from pathlib import Path

from confseg.data import DatasetWriter
from confseg.data.schema import ConfidenceLevel, rater_fraction
from confseg.errors import ConfsegError, ImportLayoutError
from confseg.importers._common import (
    PathLike,
    ProgressFn,
    as_int,
    binarise,
    check_classes,
    check_paths,
    check_size,
    finish,
    inside,
    safe_id,
    tick,
    visible,
)
from confseg.io.images import image_shape, read_image

LAYOUT = "multirater"
RATER_NAMING = ("index", "stem")


@dataclass
class _Case:
    name: str
    image: Path
    masks: list[Path]


def _scan_case(src: Path, folder: Path, pattern: str, image_name: str | None) -> _Case:
    files = [
        inside(src, p.relative_to(src), what=f"{LAYOUT} source file {p}")
        for p in visible(folder)
        if p.is_file()
    ]
    masks = [p for p in files if fnmatch.fnmatch(p.name, pattern)]
    if not masks:
        raise ImportLayoutError(
            f"{folder}: no rater mask matching {pattern!r}; the {LAYOUT} "
            "layout expects <case>/image.png and <case>/seg01.png ..."
        )
    others = [p for p in files if p not in masks]
    wanted = image_name or "image.png"
    named = [p for p in others if p.name == wanted]
    if named:
        image = named[0]
    elif image_name is None and len(others) == 1:
        image = others[0]
    elif not others or image_name is not None:
        raise ImportLayoutError(
            f"{folder / wanted}: image missing; the {LAYOUT} layout expects "
            "one image per case folder beside the rater masks"
        )
    else:
        listed = ", ".join(p.name for p in others)
        raise ImportLayoutError(
            f"{folder}: several candidate images ({listed}); name the image "
            "with the image_name option or remove the extra files"
        )
    return _Case(name=folder.name, image=image, masks=masks)


def _rater_names(case: _Case, naming: str) -> list[str]:
    if naming == "stem":
        return [safe_id(p.stem) for p in case.masks]
    width = max(2, len(str(len(case.masks))))
    return [f"r{i:0{width}d}" for i in range(1, len(case.masks) + 1)]


def _scale(n_raters: int) -> tuple[ConfidenceLevel, ...]:
    levels: dict[int, ConfidenceLevel] = {}
    for k in range(1, n_raters + 1):
        v = round(100 * k / n_raters)
        levels[v] = ConfidenceLevel(
            value=v,
            name=f"{k}/{n_raters} raters",
            description=f"{k} of {n_raters} raters marked the pixel.",
        )
    return tuple(levels[v] for v in sorted(levels))


def import_multirater(
    src: PathLike,
    dst: PathLike,
    *,
    overwrite: bool = False,
    progress: ProgressFn | None = None,
    class_name: str = "foreground",
    mask_pattern: str = "seg*.png",
    image_name: str | None = None,
    rater_names: str = "index",
    threshold: int = 127,
    name: str | None = None,
) -> Path:
    """Import a folder-per-case multi-rater layout into a native dataset.

    Args:
        src: Folder holding one sub-folder per case.
        dst: New dataset folder.
        overwrite: Replace ``dst`` if it exists.
        progress: Called as ``progress(done, total)`` after each case.
        class_name: Name of the one class the raters segmented (QUBIQ brain growth: "brain").
        mask_pattern: Glob (on file names) of the rater masks; sorted naturally.
        image_name: File name of the image in each case folder (default ``image.png``,
            or the single file that is not a rater mask).
        rater_names: ``index`` (r01, r02, ... by sorted mask order) or ``stem`` (the mask
            file stems, e.g. seg01).
        threshold: Grey values strictly above it are foreground (0/1 masks: above 0).
        name: Dataset name (default: the source folder's name).

    Returns:
        The dataset folder.
    """
    src_p, dst_p = check_paths(src, dst, LAYOUT)
    if rater_names not in RATER_NAMING:
        raise ConfsegError(f"option rater_names={rater_names!r}; use one of {list(RATER_NAMING)}")
    thr = as_int(threshold, "threshold", 0, 254)
    check_classes([class_name], "class_name")
    if not src_p.is_dir():
        raise ImportLayoutError(
            f"{src_p}: not a folder; the {LAYOUT} layout expects a folder of case folders"
        )
    case_dirs = [p for p in visible(src_p) if p.is_dir()]
    if not case_dirs:
        raise ImportLayoutError(
            f"{src_p}: no case folders; the {LAYOUT} layout expects "
            "<case>/image.png and <case>/seg01.png ..."
        )
    cases = [_scan_case(src_p, d, mask_pattern, image_name) for d in case_dirs]
    total = len(cases)
    meta = {"source": {"layout": LAYOUT, "path": str(src_p.resolve())}}
    scale = _scale(max(len(c.masks) for c in cases))
    tick(progress, 0, total)
    with DatasetWriter(
        dst_p,
        name=name or src_p.resolve().name,
        classes=[class_name],
        scale=scale,
        meta=meta,
        overwrite=overwrite,
    ) as w:
        for done, case in enumerate(cases, 1):
            shape = image_shape(case.image)
            masks = []
            for p in case.masks:
                arr = read_image(p)
                check_size(shape, arr.shape, p, case.image)
                masks.append(binarise(arr, thr))
            raters = {
                r: {class_name: m}
                for r, m in zip(_rater_names(case, rater_names), masks, strict=True)
            }
            w.add(
                item_id=safe_id(case.name),
                patient=case.name,
                view="",
                day=0,
                image_file=case.image,
                confidence={class_name: rater_fraction(masks)},
                raters=raters,
                n_raters=len(masks),
            )
            tick(progress, done, total)
        finish(w)
    return dst_p
