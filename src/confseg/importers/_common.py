"""Helpers shared by the importers: path checks, options, patient ids, sizes, rasterising."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path, PurePosixPath, PureWindowsPath

import numpy as np
from PIL import Image, ImageDraw

from confseg.data import DatasetWriter, validate_files
from confseg.data.schema import ClassSchema
from confseg.errors import ConfsegError, DatasetError, ImportLayoutError
from confseg.io.images import to_grey_max

ProgressFn = Callable[[int, int], None]
PathLike = str | os.PathLike[str]

# A source with a single annotator and no confidence: every mark is "certain".
# Binary sources (one annotator, no confidence): imported marks are stored as 100 and the
# dataset keeps the default five-level scale, so the data can be re-annotated with
# confidence in `confseg annotate`. The metadata says the imported marks carry no confidence.
BINARY_SOURCE_NOTE = ("imported marks are binary (100 = marked by the source annotator, no "
                      "confidence recorded); the scale is confseg's default for re-annotation")


def check_paths(src: PathLike, dst: PathLike, layout: str) -> tuple[Path, Path]:
    """Check that ``src`` exists and that ``dst`` neither is nor overlaps it.

    Raises:
        ImportLayoutError: the source is missing or the two overlap.
    """
    s, d = Path(src), Path(dst)
    if not s.exists():
        raise ImportLayoutError(f"{s}: source not found; give the folder of a {layout} dataset")
    rs, rd = s.resolve(), d.resolve()
    if rd == rs or rd.is_relative_to(rs) or rs.is_relative_to(rd):
        raise ImportLayoutError(
            f"{d}: the output folder overlaps the source {s}; choose a DST outside the source"
        )
    return s, d


def inside(root: Path, name: str | os.PathLike[str], *, what: str) -> Path:
    r"""``root / name``, checked to stay inside ``root``: the one guard against path traversal.

    Every importer resolves each name it takes from an export (CVAT ``<image name=...>``,
    a Label Studio image URL) or from a source listing through this, before reading or
    copying the file. Refused: absolute names (POSIX or Windows, ``C:...``), names whose
    ``..`` climb out of ``root``, and names that reach a file outside ``root`` through a
    symbolic link (the link itself or a linked folder on the way). Backslashes count as
    separators, so a Windows-made ``..\x.png`` is refused too.

    Args:
        root: The source folder (``--images`` folder or the source dataset folder).
        name: The name as the export or listing gives it (relative to ``root``).
        what: Names the entry in the message, e.g. ``"annotations.xml: <image name=...>"``.

    Returns:
        ``root / name`` (not resolved, so messages show the name the user knows).

    Raises:
        ImportLayoutError: one line naming the entry and the folder it must stay in.
    """
    text = os.fspath(name)
    posix = text.replace("\\", "/")
    how = "names no file in"
    try:
        if (PurePosixPath(posix).is_absolute() or PureWindowsPath(text).drive
                or PureWindowsPath(text).is_absolute()):
            how = "is an absolute path, not a name inside"
            raise ValueError(how)
        base = root.resolve()
        target = (base / posix).resolve()
        if target == base:
            raise ValueError(how)
        if not target.is_relative_to(base):
            how = "leads outside"
            raise ValueError(how)
    except (ValueError, OSError, RuntimeError):  # also NUL bytes and symlink loops
        raise ImportLayoutError(
            f"{what}: {text!r} {how} {root}; entries must name files inside it "
            "(no absolute paths, no '..' out of it, no links pointing out of it)"
        ) from None
    return root / posix


def require_dir(path: Path, layout: str, expect: str) -> Path:
    """Return ``path`` if it is a folder, else raise naming what the layout expects."""
    if not path.is_dir():
        raise ImportLayoutError(f"{path}: folder missing; the {layout} layout expects {expect}")
    return path


def require_file(path: Path, layout: str, expect: str) -> Path:
    """Return ``path`` if it is a file, else raise naming what the layout expects."""
    if not path.is_file():
        raise ImportLayoutError(f"{path}: file missing; the {layout} layout expects {expect}")
    return path


def visible(folder: Path) -> list[Path]:
    """Entries of ``folder`` that are not hidden (no leading dot), in natural order."""
    return sorted(
        (p for p in folder.iterdir() if not p.name.startswith(".")),
        key=lambda p: natural_key(p.name),
    )


def natural_key(text: str) -> list[int | str]:
    """Sort key that orders ``frame2`` before ``frame10``."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", text)]


def as_names(value: str | Iterable[str] | None, option: str) -> list[str] | None:
    """Parse a list option given as a list or a comma-separated string (CLI)."""
    if value is None:
        return None
    names = [v.strip() for v in value.split(",")] if isinstance(value, str) else list(value)
    names = [n for n in names if n]
    if not names:
        raise ConfsegError(f"option {option}={value!r} names nothing; give at least one name")
    return names


def as_int(value: object, option: str, lo: int, hi: int) -> int:
    """Parse an integer option (it may come from the CLI as a string)."""
    try:
        out = int(str(value))
    except ValueError:
        raise ConfsegError(f"option {option}={value!r} is not an integer") from None
    if not lo <= out <= hi:
        raise ConfsegError(f"option {option}={out} is out of range; use {lo}..{hi}")
    return out


def check_classes(names: Iterable[str], where: str) -> tuple[str, ...]:
    """Check class names before a DatasetWriter is opened (so no temp folder is left).

    Raises:
        ImportLayoutError: a name is empty, duplicated or not a plain word.
    """
    try:
        return ClassSchema(names=tuple(names)).names
    except DatasetError as exc:
        raise ImportLayoutError(f"{where}: {exc}") from None


def compile_regex(regex: str | None, option: str = "patient_regex") -> re.Pattern[str] | None:
    """Compile a user regex, raising a one-line error if it is invalid."""
    if regex is None or regex == "":
        return None
    try:
        return re.compile(regex)
    except re.error as exc:
        raise ConfsegError(f"option {option}={regex!r} is not a valid regex ({exc})") from None


def patient_from(name: str, regex: re.Pattern[str] | None) -> str:
    """Patient id from a case/image name.

    Without a regex the whole name is the patient. With one, the named group
    ``patient``, else group 1, else the whole match is used.

    Raises:
        ImportLayoutError: the regex does not match ``name``.
    """
    if regex is None:
        return name
    m = regex.search(name)
    if m is None:
        raise ImportLayoutError(
            f"{name}: patient_regex {regex.pattern!r} does not match this "
            "name; fix the regex so that it matches every case"
        )
    if "patient" in regex.groupindex:
        out = m.group("patient")
    elif regex.groups >= 1:
        out = m.group(1)
    else:
        out = m.group(0)
    if not out:
        raise ImportLayoutError(
            f"{name}: patient_regex {regex.pattern!r} extracts an empty patient id; fix the regex"
        )
    return out


def safe_id(text: str) -> str:
    """An item id usable as a file name: path separators and odd characters become ``_``."""
    out = re.sub(r"[^A-Za-z0-9_.+=-]", "_", text).lstrip(".")
    return out or "item"


def check_size(shape: tuple[int, int], arr_shape: Sequence[int], path: Path, image: Path) -> None:
    """Raise the validation error if a map's size differs from its image's.

    Raises:
        DatasetError: naming the map and the image, as dataset validation does.
    """
    if tuple(arr_shape[:2]) != tuple(shape):
        raise DatasetError(
            f"{path}: size {arr_shape[1]}x{arr_shape[0]} differs from image {image} "
            f"({shape[1]}x{shape[0]}); resample the mask to the image"
        )


def binarise(arr: np.ndarray, threshold: int = 127) -> np.ndarray:
    """Binary mask from a 0/1 or 0/255 (possibly lossy, possibly colour) source mask array.

    Not for percent (0..100) confidence or rater maps: a 0-100 map would binarise at
    ``threshold`` and lose its low levels. Read those with
    :func:`confseg.io.images.read_rater_map`.
    """
    a = to_grey_max(arr)
    if int(a.max(initial=0)) <= 1:
        return a > 0
    return a > threshold


def fill_polygon(shape: tuple[int, int], points: Sequence[tuple[float, float]]) -> np.ndarray:
    """Rasterise a closed polygon given in pixel ``(x, y)`` coordinates to a bool mask.

    Pixels whose centre (integer coordinate) lies inside or on the outline are set,
    as PIL's ImageDraw fills them.
    """
    canvas = Image.new("L", (shape[1], shape[0]), 0)
    ImageDraw.Draw(canvas).polygon([(float(x), float(y)) for x, y in points], fill=1, outline=1)
    return np.asarray(canvas, dtype=bool)


def tick(progress: ProgressFn | None, done: int, total: int) -> None:
    """Report progress if a callback was given."""
    if progress is not None:
        progress(done, total)


def finish(writer: DatasetWriter) -> None:
    """Fully validate what was written (still in the writer's temp folder).

    Call it as the last statement inside the ``with DatasetWriter(...)`` block so that
    an invalid result never reaches the destination.
    """
    validate_files(writer.ds)
