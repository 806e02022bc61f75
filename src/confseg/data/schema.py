"""The data model: items, class schema, confidence scale and confidence maps.

On disk a confidence map is uint8 percent (0..100, 0 = not marked) in a PNG; in
memory it is float32 in [0, 1].
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from confseg.errors import DatasetError

# Keys of an item that confseg itself understands; any other key is kept as-is.
ITEM_KEYS = ("id", "patient", "view", "day", "image", "confidence", "raters", "video",
             "ignore", "truth")


@dataclass(frozen=True, kw_only=True)
class ConfidenceLevel:
    """One level of the confidence scale shown to annotators.

    Attributes:
        value: Percent, 1..100.
        name: Short label ("probable").
        description: One line explaining when to use it.
    """

    value: int
    name: str
    description: str = ""


DEFAULT_SCALE: tuple[ConfidenceLevel, ...] = (
    ConfidenceLevel(value=20, name="possible",
                    description="Could be there; I would not act on it."),
    ConfidenceLevel(value=40, name="unsure",
                    description="Somewhat likely, but an equally good reader might disagree."),
    ConfidenceLevel(value=60, name="probable",
                    description="More likely than not; most readers would mark it."),
    ConfidenceLevel(value=80, name="very likely",
                    description="Clearly visible; only a minor doubt about its extent."),
    ConfidenceLevel(value=100, name="certain",
                    description="Unambiguous; any trained reader would mark it."),
)


@dataclass(frozen=True, kw_only=True)
class ClassSchema:
    """The ordered segmentation classes of a dataset (multi-label: classes may overlap)."""

    names: tuple[str, ...]

    def __post_init__(self) -> None:
        if not self.names:
            raise DatasetError("classes: the list is empty; name at least one class")
        if len(set(self.names)) != len(self.names):
            raise DatasetError(f"classes: duplicate names in {list(self.names)}")
        for n in self.names:
            if not n or "/" in n or "\\" in n or n.startswith("."):
                raise DatasetError(f"classes: invalid class name {n!r}; use a plain word")

    def index(self, name: str) -> int:
        """Position of class ``name``; raises DatasetError if unknown."""
        try:
            return self.names.index(name)
        except ValueError:
            raise DatasetError(
                f"unknown class {name!r}; the dataset's classes are {list(self.names)}"
            ) from None

    def __len__(self) -> int:
        return len(self.names)


@dataclass(kw_only=True)
class Item:
    """One annotated image (or video) of a dataset.

    Paths are relative to the dataset folder, as in ``dataset.json``.

    Attributes:
        id: Unique id.
        patient: Patient id; splits are grouped by it.
        view: Scan position / view (e.g. a BLUE point), free text.
        day: Study day (integer), for longitudinal data.
        image: Image path, or None for a video-only item.
        confidence: Class name -> percent confidence map path.
        raters: Rater name -> class name -> mask path (binary or percent).
        video: Optional video path.
        ignore: Optional binary mask path: pixels left out of every loss and metric.
        truth: Optional class name -> binary ground-truth mask path (synthetic data).
        extra: Any other keys of the item, kept and written back unchanged.
    """

    id: str
    patient: str
    view: str = ""
    day: int = 0
    image: str | None = None
    confidence: dict[str, str] = field(default_factory=dict)
    raters: dict[str, dict[str, str]] = field(default_factory=dict)
    video: str | None = None
    ignore: str | None = None
    truth: dict[str, str] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The item as it appears in ``dataset.json`` (empty optional keys left out)."""
        out: dict[str, Any] = {"id": self.id, "patient": self.patient, "view": self.view,
                               "day": self.day}
        if self.image is not None:
            out["image"] = self.image
        if self.confidence:
            out["confidence"] = dict(self.confidence)
        if self.raters:
            out["raters"] = {r: dict(m) for r, m in self.raters.items()}
        if self.video is not None:
            out["video"] = self.video
        if self.ignore is not None:
            out["ignore"] = self.ignore
        if self.truth:
            out["truth"] = dict(self.truth)
        out.update(self.extra)
        return out

    @classmethod
    def from_json(cls, obj: Any, where: str) -> Item:
        """Build an item from its ``dataset.json`` entry.

        Args:
            obj: The JSON object.
            where: Text naming the entry in error messages.
        """
        if not isinstance(obj, dict):
            raise DatasetError(f"{where}: each item must be a JSON object")
        for key in ("id", "patient"):
            if key not in obj or obj[key] in (None, ""):
                raise DatasetError(f"{where}: missing required key {key!r}")
        try:
            if isinstance(obj.get("day", 0), bool | float):
                raise TypeError
            day = int(obj.get("day", 0))
        except (TypeError, ValueError):
            raise DatasetError(
                f"{where}: 'day' must be an integer, got {obj.get('day')!r}") from None
        for key in ("confidence", "truth"):
            val = obj.get(key, {})
            if not isinstance(val, dict) or not all(isinstance(v, str) for v in val.values()):
                raise DatasetError(f"{where}: {key!r} must map class names to file paths")
        raters = obj.get("raters", {})
        if not isinstance(raters, dict) or not all(
                isinstance(m, dict) and all(isinstance(v, str) for v in m.values())
                for m in raters.values()):
            raise DatasetError(f"{where}: 'raters' must map rater -> class -> file path")
        for key in ("id", "patient"):
            if isinstance(obj[key], bool) or not isinstance(obj[key], str | int):
                raise DatasetError(f"{where}: {key!r} must be a string, got {obj[key]!r}")
        for key in ("image", "video", "ignore"):
            if obj.get(key) is not None and not isinstance(obj[key], str):
                raise DatasetError(f"{where}: {key!r} must be a file path (a string) or null, "
                                   f"got {obj[key]!r}")
        if not isinstance(obj.get("view", ""), str | int):
            raise DatasetError(f"{where}: 'view' must be a string, got {obj['view']!r}")
        return cls(
            id=str(obj["id"]),
            patient=str(obj["patient"]),
            view=str(obj.get("view", "")),
            day=day,
            image=obj.get("image"),
            confidence=dict(obj.get("confidence", {})),
            raters={str(r): dict(m) for r, m in raters.items()},
            video=obj.get("video"),
            ignore=obj.get("ignore"),
            truth=dict(obj.get("truth", {})),
            extra={k: v for k, v in obj.items() if k not in ITEM_KEYS},
        )


def percent_to_unit(percent: np.ndarray) -> np.ndarray:
    """uint8 percent (0..100) -> float32 in [0, 1]."""
    return np.asarray(percent, dtype=np.float32) / 100.0


def unit_to_percent(conf: np.ndarray) -> np.ndarray:
    """Float in [0, 1] -> uint8 percent, rounded to the nearest percent."""
    c = np.asarray(conf, dtype=np.float64)
    if c.size and (np.nanmin(c) < 0 or np.nanmax(c) > 1):
        raise ValueError("confidence must lie in [0, 1]")
    return np.rint(c * 100.0).astype(np.uint8)


def rater_fraction(masks: list[np.ndarray]) -> np.ndarray:
    """Per-pixel fraction of raters who marked a pixel, float32 in [0, 1]."""
    if not masks:
        raise ValueError("rater_fraction needs at least one mask")
    stack = np.stack([np.asarray(m, dtype=bool) for m in masks])
    return stack.mean(axis=0).astype(np.float32)
