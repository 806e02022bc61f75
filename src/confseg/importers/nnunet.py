"""Importer for nnU-Net v2 raw datasets (2D): integer label maps become confidence 100.

Source layout::

    SRC/dataset.json          channel_names, labels (name -> int), file_ending
    SRC/imagesTr/<case>_0000<file_ending> [, <case>_0001..., one file per channel]
    SRC/labelsTr/<case><file_ending>

Every label except background (value 0) becomes a class with confidence 100 where
the label map has its value; the label named ``ignore`` becomes the item's ignore
mask. imagesTs is not imported (no labels).
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from confseg.data import DatasetWriter
from confseg.errors import DatasetError, ImportLayoutError, MediaError
from confseg.importers._common import (
    BINARY_SOURCE_NOTE,
    PathLike,
    ProgressFn,
    check_classes,
    check_paths,
    check_size,
    compile_regex,
    finish,
    inside,
    natural_key,
    patient_from,
    require_dir,
    require_file,
    safe_id,
    tick,
    visible,
)
from confseg.io.images import PIL_SUFFIXES, read_image

LAYOUT = "nnunet"
_NIFTI = (".nii.gz", ".nii")


@dataclass(frozen=True, kw_only=True)
class NnunetSpec:
    """What dataset.json says.

    Attributes:
        channels: Number of input channels.
        classes: Class name -> label value (background and ignore left out), by value.
        ignore: The ignore label's value, or None.
        file_ending: File suffix of every image and label, e.g. ``.png``.
    """

    channels: int
    classes: dict[str, int]
    ignore: int | None
    file_ending: str


def read_spec(path: Path) -> NnunetSpec:
    """Parse and check an nnU-Net v2 dataset.json.

    Raises:
        ImportLayoutError: a key is missing or holds something this importer cannot use.
    """
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise ImportLayoutError(f"{path}: not valid JSON ({exc}); fix the file") from None
    for key in ("channel_names", "labels", "file_ending"):
        if not isinstance(obj, dict) or key not in obj:
            raise ImportLayoutError(
                f"{path}: key {key!r} missing; the {LAYOUT} layout expects "
                "an nnU-Net v2 dataset.json (channel_names, labels, "
                "file_ending)"
            )
    channels = obj["channel_names"]
    if not isinstance(channels, dict) or not channels:
        raise ImportLayoutError(
            f"{path}: 'channel_names' = {channels!r}; nnU-Net v2 maps channel indices to "
            'names, e.g. {"0": "US"}'
        )
    ending = obj["file_ending"]
    if not isinstance(ending, str) or (
        ending.lower() not in PIL_SUFFIXES and ending.lower() not in _NIFTI
    ):
        raise ImportLayoutError(
            f"{path}: file_ending {ending!r} is not supported; the {LAYOUT} "
            "importer reads 2D .png (or other PIL images) and 2D NIfTI"
        )
    labels = obj["labels"]
    if not isinstance(labels, dict) or not labels:
        raise ImportLayoutError(f"{path}: 'labels' must map label names to integers")
    classes: dict[str, int] = {}
    ignore = None
    for lname, val in labels.items():
        if not isinstance(val, int) or isinstance(val, bool) or val < 0:
            raise ImportLayoutError(
                f"{path}: label {lname!r} = {val!r}; region-based or non-integer labels are not "
                "supported, give each label one integer value"
            )
        if lname.lower() == "ignore":
            ignore = val
        elif val != 0:
            classes[lname] = val
    if not classes:
        raise ImportLayoutError(f"{path}: 'labels' has no class besides background/ignore")
    if len(set(classes.values())) != len(classes):
        raise ImportLayoutError(f"{path}: two labels share one value; give each its own value")
    classes = dict(sorted(classes.items(), key=lambda kv: kv[1]))
    check_classes(classes, f"{path}: labels")
    return NnunetSpec(
        channels=len(channels),
        classes=classes,
        ignore=ignore,
        file_ending=ending,
    )


@dataclass
class _Case:
    case: str
    label: Path
    channels: list[Path]


def _scan(src: Path, spec: NnunetSpec) -> list[_Case]:
    ending = spec.file_ending
    img_dir = require_dir(src / "imagesTr", LAYOUT, f"imagesTr/<case>_0000{ending}")
    lab_dir = require_dir(src / "labelsTr", LAYOUT, f"labelsTr/<case>{ending}")

    def checked(p: Path) -> Path:  # a file of the listing, refused if a link leads out of src
        return inside(src, p.relative_to(src), what=f"{LAYOUT} source file {p}")

    cases = []
    for lab in visible(lab_dir):
        if not lab.name.endswith(ending):
            raise ImportLayoutError(
                f"{lab}: unexpected file; labelsTr holds <case>{ending} "
                "(file_ending in dataset.json)"
            )
        case = lab.name[: -len(ending)]
        chans = [img_dir / f"{case}_{c:04d}{ending}" for c in range(spec.channels)]
        if not chans[0].is_file():
            raise ImportLayoutError(
                f"{chans[0]}: file missing; the {LAYOUT} layout expects "
                f"imagesTr/<case>_0000{ending} for every label file"
            )
        cases.append(
            _Case(
                case=case,
                label=checked(lab),
                channels=[checked(p) for p in chans if p.is_file()],
            )
        )
    if not cases:
        raise ImportLayoutError(
            f"{lab_dir}: no label files; the {LAYOUT} layout expects labelsTr/<case>{ending}"
        )
    known = {p.name for c in cases for p in c.channels}
    for img in visible(img_dir):
        if img.name not in known:
            raise ImportLayoutError(
                f"{img}: image without a label file (or a channel beyond "
                f"channel_names); expected labelsTr/<case>{ending}"
            )
    return sorted(cases, key=lambda c: natural_key(c.case))


def _read(path: Path) -> np.ndarray:
    try:
        return read_image(path)
    except MediaError as exc:
        if path.name.lower().endswith(_NIFTI) and "must be 2D" in str(exc):
            raise ImportLayoutError(
                f"{path}: 3D NIfTI is not supported yet; the {LAYOUT} "
                "importer handles 2D cases only"
            ) from None
        raise


def _image(case: _Case, spec: NnunetSpec) -> tuple[np.ndarray | None, np.ndarray, bool]:
    """(array to write or None to copy _0000 as-is, first channel array, channels dropped)."""
    first = _read(case.channels[0])
    natural = first.ndim == 3 and first.shape[-1] == spec.channels
    if spec.channels == 1 or natural:
        return None, first, False
    if len(case.channels) < spec.channels:
        missing = case.channels[0].with_name(
            f"{case.case}_{len(case.channels):04d}{spec.file_ending}"
        )
        raise ImportLayoutError(
            f"{missing}: file missing; dataset.json names {spec.channels} channels, one file each"
        )
    if spec.channels == 3:
        arrs = [first] + [_read(p) for p in case.channels[1:]]
        for p, a in zip(case.channels, arrs, strict=True):
            check_size(first.shape[:2], a.shape, p, case.channels[0])
        if all(a.ndim == 2 and a.dtype == np.uint8 for a in arrs):
            return np.stack(arrs, axis=-1), first, False
    return None, first, True


def _label_map(path: Path, spec: NnunetSpec) -> np.ndarray:
    lab = _read(path)
    if lab.ndim != 2:
        raise ImportLayoutError(
            f"{path}: label map has shape {lab.shape}; nnU-Net labels are "
            "single-channel integer maps"
        )
    if not np.issubdtype(lab.dtype, np.integer):
        if not np.all(np.mod(lab, 1) == 0):
            raise DatasetError(f"{path}: label map holds non-integer values; re-export it")
        lab = lab.astype(np.int64)
    allowed = {0, *spec.classes.values()} | ({spec.ignore} if spec.ignore is not None else set())
    bad = sorted(set(np.unique(lab).tolist()) - allowed)
    if bad:
        raise DatasetError(
            f"{path}: label value {bad[0]} is not in dataset.json 'labels' "
            f"{sorted(allowed)}; fix the label map or dataset.json"
        )
    return lab


def import_nnunet(
    src: PathLike,
    dst: PathLike,
    *,
    overwrite: bool = False,
    progress: ProgressFn | None = None,
    patient_regex: str | None = None,
    name: str | None = None,
) -> Path:
    r"""Import an nnU-Net v2 raw dataset folder (2D) into a native dataset.

    Args:
        src: Folder holding dataset.json, imagesTr/ and labelsTr/.
        dst: New dataset folder.
        overwrite: Replace ``dst`` if it exists.
        progress: Called as ``progress(done, total)`` after each case.
        patient_regex: Regex applied to the case id to get the patient (named group
            ``patient``, else group 1, else the match), e.g. ``^(\w+?)_``. nnU-Net has no
            patient field; without it every case is its own patient.
        name: Dataset name (default: the source folder's name).

    Returns:
        The dataset folder.
    """
    src_p, dst_p = check_paths(src, dst, LAYOUT)
    regex = compile_regex(patient_regex)
    spec = read_spec(
        require_file(
            src_p / "dataset.json",
            LAYOUT,
            "an nnU-Net v2 dataset.json beside imagesTr/ and labelsTr/",
        )
    )
    cases = _scan(src_p, spec)
    patients = {c.case: patient_from(c.case, regex) for c in cases}
    names = list(spec.classes)
    total = len(cases)
    meta = {"source": {"layout": LAYOUT, "path": str(src_p.resolve()),
                       "confidence": BINARY_SOURCE_NOTE}}
    dropped = 0
    tick(progress, 0, total)
    with DatasetWriter(
        dst_p,
        name=name or src_p.resolve().name,
        classes=names,
        meta=meta,
        overwrite=overwrite,
        inputs=(src_p,),  # an nnU-Net folder has a dataset.json too: never replace it
    ) as w:
        for done, case in enumerate(cases, 1):
            arr, first, lost = _image(case, spec)
            dropped += lost
            lab = _label_map(case.label, spec)
            check_size(first.shape[:2], lab.shape, case.label, case.channels[0])
            conf = {cls: lab == v for cls, v in spec.classes.items()}
            ign = lab == spec.ignore if spec.ignore is not None else None
            extra = {"channels_used": 1} if lost else {}
            w.add(
                item_id=safe_id(case.case),
                patient=patients[case.case],
                view="",
                day=0,
                image=arr,
                image_file=case.channels[0] if arr is None else None,
                confidence=conf,
                ignore=ign if ign is not None and ign.any() else None,
                case=case.case,
                **extra,
            )
            tick(progress, done, total)
        finish(w)
    if dropped:
        warnings.warn(
            f"{src_p}: {dropped} case(s) have {spec.channels} channels; only channel "
            "_0000 was imported",
            stacklevel=2,
        )
    return dst_p
