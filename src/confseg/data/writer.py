"""Write a new native dataset: files into a temp folder, renamed into place on success."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from confseg.data.clinical import ClinicalSchema, write_clinical_csv
from confseg.data.dataset import DATASET_JSON, Dataset
from confseg.data.schema import DEFAULT_SCALE, ClassSchema, ConfidenceLevel, Item, unit_to_percent
from confseg.errors import DatasetError
from confseg.io.images import write_png
from confseg.io.outputs import check_output_folder


class DatasetWriter:
    """Build a native dataset in a temp folder; rename it into place on success.

    Example::

        with DatasetWriter(out, name="x", classes=["a"]) as w:
            w.add(item_id="p1_0", patient="p1", image=img, confidence={"a": conf})

    Nothing appears at ``out`` unless the block finishes without error. ``overwrite`` replaces
    only an existing dataset folder, and never one of ``inputs`` (the source being imported).
    """

    def __init__(self, out: str | os.PathLike[str], *, name: str, classes: Iterable[str],
                 scale: tuple[ConfidenceLevel, ...] = DEFAULT_SCALE,
                 meta: Mapping[str, Any] | None = None, overwrite: bool = False,
                 inputs: Iterable[str | os.PathLike[str] | None] = ()) -> None:
        self.out = Path(out)
        # --overwrite replaces only a dataset folder, never an input (or a folder holding one),
        # the working directory or home
        check_output_folder(self.out, overwrite=overwrite, kind="dataset folder",
                            looks_like=lambda p: (p / DATASET_JSON).is_file(), inputs=inputs)
        self.overwrite = overwrite
        schema = ClassSchema(names=tuple(classes))  # validate before creating anything
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = Path(tempfile.mkdtemp(prefix=f".{self.out.name}.", suffix=".tmp",
                                         dir=self.out.parent))
        self.ds = Dataset(root=self.tmp, name=name, schema=schema, scale=scale,
                          meta=dict(meta or {}))
        self._ids: set[str] = set()

    def __enter__(self) -> DatasetWriter:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            return
        try:
            self.ds.save()
            os.chmod(self.tmp, 0o777 & ~_umask())  # mkdtemp makes 0700; honour the umask
            if self.out.exists():
                old = self.out.with_name(f".{self.out.name}.old")
                shutil.rmtree(old, ignore_errors=True)
                os.replace(self.out, old)
                os.replace(self.tmp, self.out)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(self.tmp, self.out)
            self.ds.root = self.out
        except BaseException:
            shutil.rmtree(self.tmp, ignore_errors=True)
            raise

    @property
    def root(self) -> Path:
        """The temp folder being written (becomes ``out`` on success)."""
        return self.tmp

    def add(self, *, item_id: str, patient: str, view: str = "", day: int = 0,
            image: np.ndarray | None = None, image_file: str | os.PathLike[str] | None = None,
            confidence: Mapping[str, np.ndarray] | None = None,
            raters: Mapping[str, Mapping[str, np.ndarray]] | None = None,
            ignore: np.ndarray | None = None, truth: Mapping[str, np.ndarray] | None = None,
            video_file: str | os.PathLike[str] | None = None, **extra: Any) -> Item:
        """Add one item, writing its files.

        Args:
            item_id: Unique id (used in file names; no slashes).
            patient: Patient id.
            view: View name.
            day: Study day.
            image: Image array to save as PNG, or
            image_file: an existing image file to copy unchanged (keeps JPEG/NIfTI/DICOM).
            confidence: Class -> float map in [0, 1] (or bool mask = 100%).
            raters: Rater -> class -> bool mask or float map in [0, 1].
            ignore: Bool mask of pixels to leave out.
            truth: Class -> bool true mask.
            video_file: A video file to copy in.
            **extra: Extra item keys kept in dataset.json.
        """
        if not item_id or "/" in item_id or "\\" in item_id or item_id.startswith("."):
            raise DatasetError(f"invalid item id {item_id!r}; use letters, digits, - and _")
        if item_id in self._ids:
            raise DatasetError(f"duplicate item id {item_id!r}")
        self._ids.add(item_id)
        it = Item(id=item_id, patient=str(patient), view=str(view), day=int(day), extra=extra)
        if image is not None:
            it.image = f"images/{item_id}.png"
            write_png(self.tmp / it.image, np.asarray(image))
        elif image_file is not None:
            src = Path(image_file)
            suffix = ".nii.gz" if src.name.lower().endswith(".nii.gz") else src.suffix.lower()
            it.image = f"images/{item_id}{suffix}"
            (self.tmp / "images").mkdir(exist_ok=True)
            shutil.copyfile(src, self.tmp / it.image)
        for cls, arr in (confidence or {}).items():
            self.ds.schema.index(cls)
            it.confidence[cls] = f"confidence/{cls}/{item_id}.png"
            write_png(self.tmp / it.confidence[cls], _to_percent(arr))
        for rater, m in (raters or {}).items():
            for cls, arr in m.items():
                self.ds.schema.index(cls)
                rel = f"raters/{rater}/{cls}/{item_id}.png"
                it.raters.setdefault(rater, {})[cls] = rel
                write_png(self.tmp / rel, _to_percent(arr))
        if ignore is not None:
            it.ignore = f"ignore/{item_id}.png"
            write_png(self.tmp / it.ignore, np.asarray(ignore, dtype=bool).astype(np.uint8))
        for cls, arr in (truth or {}).items():
            it.truth[cls] = f"truth/{cls}/{item_id}.png"
            write_png(self.tmp / it.truth[cls], np.asarray(arr, dtype=bool).astype(np.uint8))
        if video_file is not None:
            src = Path(video_file)
            it.video = f"videos/{item_id}{src.suffix.lower()}"
            (self.tmp / "videos").mkdir(exist_ok=True)
            shutil.copyfile(src, self.tmp / it.video)
        self.ds.items.append(it)
        return it

    def write_clinical(self, rows: list[dict[str, Any]], schema: ClinicalSchema) -> None:
        """Write clinical.csv (one row per patient-day) and its schema into dataset.json.

        Raises:
            DatasetError: a value that does not fit its column, or a column not in the schema.
        """
        write_clinical_csv(self.tmp / "clinical.csv", rows, schema)
        self.ds.meta["clinical_schema"] = schema.to_json()


def _to_percent(arr: np.ndarray) -> np.ndarray:
    a = np.asarray(arr)
    if a.dtype == bool:
        return a.astype(np.uint8) * 100
    if a.dtype == np.uint8:
        if a.max(initial=0) > 100:
            raise DatasetError("confidence given as uint8 must be percent 0..100")
        return a
    return unit_to_percent(a)


def _umask() -> int:
    """The process umask (read by setting and restoring it)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
