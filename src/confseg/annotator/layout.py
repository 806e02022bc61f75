"""Where the annotator's files live in a dataset folder, and the per-item JSON sidecar.

For the layer ``L`` (``confidence`` or ``raters/<rater>``)::

    L/<class>/<id>.png                          the map (uint8 percent)
    annotator/L/<id>.json                       sidecar: rater, time, tool version, status,
                                                earlier versions
    .history/L/<class>/<id>.<stamp>.png         earlier versions of the map

Every path is built from a dataset class name and an existing item id, never from raw
request text, and checked to stay inside the dataset folder.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from confseg.data.schema import Item
from confseg.errors import AnnotatorError, DatasetError, MediaError
from confseg.io.atomic import atomic_write_text
from confseg.io.images import read_percent_map, read_rater_map

RATER_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")
NOT_STARTED, IN_PROGRESS, DONE = "not started", "in progress", "done"
SIDECAR_DIR = "annotator"
HISTORY_DIR = ".history"
LOCK_FILE = ".annotator.lock"


def tool_version() -> str:
    """``confseg.__version__`` (from the installed package metadata)."""
    import confseg

    return confseg.__version__


def check_rater_name(name: str) -> str:
    """Return ``name`` if it is a valid rater name (letters, digits, ``_`` and ``-``)."""
    if not isinstance(name, str) or not RATER_RE.fullmatch(name):
        raise AnnotatorError(
            f"rater name {name!r} is not allowed; use letters, digits, _ and - "
            "(at most 64 characters)"
        )
    return name


def now_utc() -> datetime:
    """The current time in UTC."""
    return datetime.now(UTC)


class Layout:
    """Paths of one annotation layer in a dataset folder, plus sidecar reads and writes.

    Args:
        root: The dataset folder (resolved).
        rater: The rater, or None for the single-rater ``confidence/`` layer.
    """

    def __init__(self, root: Path, rater: str | None) -> None:
        self.root = root
        self.rater = None if rater is None else check_rater_name(rater)
        self.layer = "confidence" if rater is None else f"raters/{rater}"

    # ----- paths ---------------------------------------------------------------------------
    def safe(self, rel: str) -> Path:
        """Absolute path of ``rel``, refusing anything outside the dataset folder."""
        p = (self.root / rel).resolve()
        if Path(rel).is_absolute() or not p.is_relative_to(self.root) or p == self.root:
            raise AnnotatorError(f"path {rel!r} leaves the dataset folder; refused")
        return p

    @staticmethod
    def writable_id(item: Item) -> str:
        """The item id, if it can be part of a file name."""
        bad = not item.id or item.id.startswith(".")
        if bad or any(ch in item.id for ch in ("/", "\\", "\x00")):
            raise AnnotatorError(
                f"item id {item.id!r} cannot be used in a file name; "
                "rename the item in dataset.json"
            )
        return item.id

    def map_rel(self, item: Item, cls: str) -> str:
        """Where this layer's map of ``cls`` for ``item`` is saved."""
        return f"{self.layer}/{cls}/{self.writable_id(item)}.png"

    def sidecar_rel(self, item: Item) -> str:
        """The item's JSON sidecar."""
        return f"{SIDECAR_DIR}/{self.layer}/{self.writable_id(item)}.json"

    def history_rel(self, item: Item, cls: str, stamp: str) -> str:
        """Where an earlier version of a map is kept."""
        return f"{HISTORY_DIR}/{self.layer}/{cls}/{self.writable_id(item)}.{stamp}.png"

    def history_path(self, rel: str) -> Path:
        """Absolute path of a history file named in a sidecar, checked to be one."""
        p = self.safe(rel)
        if not p.is_relative_to(self.safe(f"{HISTORY_DIR}/{self.layer}")):
            raise DatasetError(
                f"{self.root / SIDECAR_DIR}: history path {rel!r} is outside "
                f"{HISTORY_DIR}/{self.layer}; fix the sidecar"
            )
        return p

    def layer_rel(self, item: Item, cls: str) -> str | None:
        """The map path dataset.json names for this layer (or the saved file), else None."""
        if self.rater is None:
            rel = item.confidence.get(cls)
        else:
            rel = item.raters.get(self.rater, {}).get(cls)
        if rel is None and self.safe(self.map_rel(item, cls)).is_file():
            rel = self.map_rel(item, cls)  # saved, but dataset.json not updated (crash)
        return rel

    # ----- maps ------------------------------------------------------------------------------
    def read_map(self, rel: str, shape: tuple[int, int], *, binary_ok: bool) -> np.ndarray:
        """Read a map as uint8 percent; rater masks (0/1 or 0/255) become 0/100.

        ``binary_ok`` (a rater layer) decodes by :func:`confseg.io.images.read_rater_map`;
        otherwise the map must be a strict percent PNG.
        """
        path = self.safe(rel)
        try:
            arr = read_rater_map(path) if binary_ok else read_percent_map(path)
        except MediaError as exc:
            raise DatasetError(str(exc)) from None
        if arr.shape != shape:
            raise DatasetError(
                f"{path}: size {arr.shape[1]}x{arr.shape[0]} differs from the image "
                f"({shape[1]}x{shape[0]}); resample the map to the image"
            )
        return arr

    # ----- sidecar ---------------------------------------------------------------------------
    def read_sidecar(self, item: Item) -> dict[str, Any]:
        """The item's sidecar (empty when there is none)."""
        p = self.safe(self.sidecar_rel(item))
        if not p.is_file():
            return {}
        try:
            obj = json.loads(p.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise DatasetError(f"{p}: sidecar is not valid JSON; fix or delete it") from None
        return obj if isinstance(obj, dict) else {}

    def new_record(self, item: Item, kind: str, restored: str | None = None) -> dict[str, Any]:
        """A history record with an id (time stamp) not used by the item before."""
        now = now_utc()
        base = now.strftime("%Y%m%dT%H%M%S%fZ")
        taken = {r.get("id") for r in self.read_sidecar(item).get("history", [])}
        stamp, n = base, 1
        while stamp in taken:
            stamp, n = f"{base}-{n}", n + 1
        rec: dict[str, Any] = {
            "id": stamp,
            "saved_at": now.isoformat(timespec="seconds"),
            "kind": kind,
            "maps": {},
        }
        if restored is not None:
            rec["restored"] = restored
        return rec

    def write_sidecar(
        self,
        item: Item,
        *,
        classes: Sequence[str],
        done: bool | None,
        record: dict[str, Any] | None,
        history_limit: int,
    ) -> None:
        """Update the sidecar: status, time, tool version, maps, history (pruned)."""
        sc = self.read_sidecar(item)
        old_status = sc.get("status")
        if done is not None:
            status = DONE if done else IN_PROGRESS
        else:
            status = old_status if old_status in (IN_PROGRESS, DONE) else IN_PROGRESS
        history = list(sc.get("history", []))
        if record is not None:
            history.append(record)
        while len(history) > history_limit:
            for rel in history.pop(0).get("maps", {}).values():
                p = self.history_path(rel)
                if p.is_file():
                    p.unlink()
        sc.update(
            {
                "item": item.id,
                "layer": self.layer,
                "rater": self.rater,
                "status": status,
                "saved_at": now_utc().isoformat(timespec="seconds"),
                "tool": "confseg annotator",
                "tool_version": tool_version(),
                "maps": {
                    c: self.map_rel(item, c) for c in classes if self.layer_rel(item, c) is not None
                },
                "history": history,
            }
        )
        atomic_write_text(self.safe(self.sidecar_rel(item)), json.dumps(sc, indent=1) + "\n")
