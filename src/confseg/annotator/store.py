"""Reading and saving the annotator's maps: version tokens, merge, history, dataset.json.

One store edits one *layer* of a dataset: the single-rater confidence maps
(``confidence/<class>/<id>.png``) or one rater's maps (``raters/<rater>/<class>/<id>.png``);
:mod:`confseg.annotator.layout` names the files.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from confseg.annotator.layout import (
    DONE,
    IN_PROGRESS,
    LOCK_FILE,
    NOT_STARTED,
    RATER_RE,
    Layout,
    check_rater_name,
)
from confseg.annotator.maps import (
    check_levels,
    check_shape,
    encode_png_b64,
    map_version,
    merge_maps,
)
from confseg.data import DATASET_JSON, Dataset, load_dataset
from confseg.data.schema import Item
from confseg.errors import ConflictError, DatasetError, InvalidMapError, MediaError, NotFoundError
from confseg.io.images import write_png

try:  # POSIX: also serialise saves between server processes (e.g. one per rater)
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]


@dataclass(kw_only=True)
class MapEdit:
    """One class's part of a save.

    Attributes:
        cls: Class name.
        base_version: Version token of the map the client started from.
        new: The client's map (uint8 percent).
        base: The map the client started from; needed to merge when the base is stale.
    """

    cls: str
    base_version: str
    new: np.ndarray
    base: np.ndarray | None = None


class AnnotationStore:
    """Reads and saves one annotation layer of a dataset (thread-safe).

    Args:
        dataset_root: The dataset folder.
        rater: Edit ``raters/<rater>/`` instead of the single-rater ``confidence/`` maps.
        history_limit: Earlier versions kept per item (oldest pruned first).
    """

    def __init__(
        self,
        dataset_root: str | os.PathLike[str],
        *,
        rater: str | None = None,
        history_limit: int = 100,
    ) -> None:
        self.root = Path(dataset_root).resolve()
        self.files = Layout(self.root, rater)
        self.rater = self.files.rater
        self.layer = self.files.layer
        self.history_limit = history_limit
        self._lock = threading.RLock()
        self._images: OrderedDict[str, np.ndarray] = OrderedDict()
        self._json_stamp: tuple[int, int] | None = None
        self.ds: Dataset
        self._items: dict[str, Item] = {}
        self._reload()

    # ----- dataset.json -------------------------------------------------------------------
    def _stat_json(self) -> tuple[int, int]:
        st = (self.root / DATASET_JSON).stat()
        return (st.st_mtime_ns, st.st_size)

    def _reload(self) -> None:
        self.ds = load_dataset(self.root, validate=False)
        self._items = {it.id: it for it in self.ds.items}
        self._json_stamp = self._stat_json()
        self._images.clear()

    def _refresh(self) -> None:
        """Reload dataset.json if another process changed it."""
        with self._lock:
            if self._stat_json() != self._json_stamp:
                self._reload()

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Hold the thread lock and the dataset's file lock; reload dataset.json if changed."""
        with self._lock:
            if fcntl is None:  # pragma: no cover
                self._refresh()
                yield
                return
            with (self.root / LOCK_FILE).open("a+") as fh:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
                try:
                    self._refresh()
                    yield
                finally:
                    fcntl.flock(fh.fileno(), fcntl.LOCK_UN)

    # ----- names and paths ------------------------------------------------------------------
    @property
    def classes(self) -> tuple[str, ...]:
        """The dataset's classes."""
        return self.ds.classes

    @property
    def levels(self) -> tuple[int, ...]:
        """Values of the confidence scale (percent)."""
        return tuple(lv.value for lv in self.ds.scale)

    def get_item(self, item_id: str) -> Item:
        """The image item with id ``item_id`` (404 for anything else)."""
        self._refresh()
        it = self._items.get(item_id)
        if it is None or it.image is None:
            raise NotFoundError(f"no image item with id {item_id!r}; ids come from /api/items")
        return it

    def check_class(self, cls: str) -> str:
        """Return ``cls`` if it is a dataset class (404 otherwise)."""
        if cls not in self.classes:
            raise NotFoundError(f"unknown class {cls!r}; the classes are {list(self.classes)}")
        return cls

    # ----- reading ----------------------------------------------------------------------------
    def image(self, item: Item) -> np.ndarray:
        """The item's image (cached)."""
        with self._lock:
            if item.id in self._images:
                self._images.move_to_end(item.id)
                return self._images[item.id]
        try:
            img = self.ds.read_image(item)
        except MediaError as exc:
            raise DatasetError(f"{exc} (item {item.id!r})") from None
        with self._lock:
            self._images[item.id] = img
            while len(self._images) > 16:
                self._images.popitem(last=False)
        return img

    def shape(self, item: Item) -> tuple[int, int]:
        """``(H, W)`` of the item's image."""
        h, w = self.image(item).shape[:2]
        return (int(h), int(w))

    def read_layer(self, item: Item, cls: str) -> np.ndarray:
        """This layer's map of ``cls`` for ``item`` as uint8 percent (zeros when unmarked)."""
        shape = self.shape(item)
        rel = self.files.layer_rel(item, cls)
        if rel is None:
            return np.zeros(shape, dtype=np.uint8)
        return self.files.read_map(rel, shape, binary_ok=self.rater is not None)

    def references(self, item: Item) -> list[dict[str, str]]:
        """Read-only layers to show beside this one: other raters, and the single-rater maps."""
        out = []
        if self.rater is not None and item.confidence:
            out.append({"key": "confidence", "label": "confidence (single-rater)"})
        out.extend(
            {"key": f"raters/{r}", "label": f"rater {r}"}
            for r in sorted(item.raters)
            if r != self.rater and RATER_RE.fullmatch(r)
        )
        return out

    def read_reference(self, item: Item, rater: str | None) -> dict[str, np.ndarray]:
        """A read-only layer: the single-rater maps (``rater=None``) or one rater's maps."""
        shape = self.shape(item)
        if rater is None:
            paths = item.confidence
        else:
            check_rater_name(rater)
            if rater not in item.raters:
                raise NotFoundError(f"item {item.id!r} has no maps of rater {rater!r}")
            paths = item.raters[rater]
        return {
            c: (
                self.files.read_map(paths[c], shape, binary_ok=rater is not None)
                if c in paths
                else np.zeros(shape, dtype=np.uint8)
            )
            for c in self.classes
        }

    def status(self, item: Item) -> str:
        """Status: not started, in progress (saved or imported, not done) or done."""
        st = self.files.read_sidecar(item).get("status")
        if st in (IN_PROGRESS, DONE):
            return st
        return (
            IN_PROGRESS if any(self.files.layer_rel(item, c) for c in self.classes) else NOT_STARTED
        )

    def list_items(self) -> dict[str, Any]:
        """Every image item with its status, and the progress counts."""
        self._refresh()
        rows = [
            {
                "id": it.id,
                "patient": it.patient,
                "view": it.view,
                "day": it.day,
                "status": self.status(it),
            }
            for it in self.ds.items
            if it.image is not None
        ]
        counts = {s: sum(r["status"] == s for r in rows) for s in (NOT_STARTED, IN_PROGRESS, DONE)}
        return {"items": rows, "progress": {"total": len(rows), **counts}}

    def history(self, item: Item) -> list[dict[str, Any]]:
        """Earlier versions of the item's maps, newest first."""
        recs = self.files.read_sidecar(item).get("history", [])
        return [
            {
                "id": r["id"],
                "saved_at": r.get("saved_at"),
                "kind": r.get("kind", "save"),
                "classes": sorted(r.get("maps", {})),
            }
            for r in reversed(recs)
        ]

    def item_state(self, item: Item) -> dict[str, Any]:
        """Everything the page needs to edit an item, maps as base64 PNG."""
        maps = {c: self.read_layer(item, c) for c in self.classes}
        h, w = self.shape(item)
        status = self.status(item)
        return {
            "id": item.id,
            "patient": item.patient,
            "view": item.view,
            "day": item.day,
            "width": w,
            "height": h,
            "layer": self.layer,
            "status": status,
            "done": status == DONE,
            "versions": {c: map_version(m) for c, m in maps.items()},
            "maps": {c: encode_png_b64(m) for c, m in maps.items()},
            "history": self.history(item),
            "references": self.references(item),
        }

    # ----- writing ----------------------------------------------------------------------------
    def save(
        self, item_id: str, edits: Sequence[MapEdit], *, done: bool | None = None
    ) -> dict[str, Any]:
        """Save edited maps (merging over newer server maps) and/or the done flag.

        A stale ``base_version`` is merged: the pixels the client changed relative to its
        base are applied on top of the current map, so strokes saved by another tab since
        are kept. The answer is the new item state plus ``merged`` (True when the client
        must refresh) and ``saved`` (classes written).

        Raises:
            InvalidMapError: wrong size, values off the scale, base map not matching its version.
            ConflictError: stale base version and no base map sent to merge with.
        """
        with self._locked():
            item = self.get_item(item_id)
            shape = self.shape(item)
            plans: list[tuple[str, np.ndarray, np.ndarray]] = []
            merged = False
            for e in edits:
                what = f"map for class {e.cls!r}"
                if e.cls not in self.classes:
                    raise InvalidMapError(
                        f"{what}: unknown class; the classes are {list(self.classes)}"
                    )
                check_shape(e.new, shape, what=what)
                current = self.read_layer(item, e.cls)
                stale = e.base_version != map_version(current)
                if e.base is None:
                    if stale:
                        raise ConflictError(
                            f"{what}: base version {e.base_version!r} is stale; "
                            "send the base map too so the server can merge"
                        )
                    base = current
                else:
                    check_shape(e.base, shape, what=f"base {what}")
                    if map_version(e.base) != e.base_version:
                        raise InvalidMapError(
                            f"base {what} does not match base_version "
                            f"{e.base_version!r}; send the map as loaded"
                        )
                    base = e.base
                check_levels(e.new, base, self.levels, what=what)
                out = merge_maps(current, base, e.new)
                merged |= stale
                if not np.array_equal(out, current):
                    plans.append((e.cls, current, out))
            record = self._write_maps(item, plans, kind="save") if plans else None
            if record is not None or done is not None:
                self._sidecar(item, done=done, record=record)
            state = self.item_state(self._items.get(item.id, item))
        return {**state, "merged": merged, "saved": [c for c, _, _ in plans]}

    def set_done(self, item_id: str, done: bool) -> dict[str, Any]:
        """Set or clear the item's "done" flag."""
        return self.save(item_id, [], done=done)

    def restore(self, item_id: str, version: str | None = None) -> dict[str, Any]:
        """Put back an earlier version (default: the one before the last save).

        The maps replaced are kept as a new version, so a restore can itself be undone.
        """
        with self._locked():
            item = self.get_item(item_id)
            recs = self.files.read_sidecar(item).get("history", [])
            if not recs:
                raise NotFoundError(f"item {item_id!r} has no earlier version to restore")
            if version is None:
                rec = recs[-1]
            else:
                found = [r for r in recs if r.get("id") == version]
                if not found:
                    raise NotFoundError(
                        f"item {item_id!r} has no version {version!r}; see its history"
                    )
                rec = found[0]
            shape = self.shape(item)
            plans = []
            for cls, rel in sorted(rec.get("maps", {}).items()):
                if cls in self.classes:
                    self.files.history_path(rel)
                    old = self.files.read_map(rel, shape, binary_ok=False)
                    plans.append((cls, self.read_layer(item, cls), old))
            record = self._write_maps(item, plans, kind="restore", restored=rec["id"])
            self._sidecar(item, done=None, record=record)
            state = self.item_state(self._items.get(item.id, item))
            return {**state, "merged": True, "saved": [c for c, _, _ in plans]}

    def _write_maps(
        self,
        item: Item,
        plans: Sequence[tuple[str, np.ndarray, np.ndarray]],
        *,
        kind: str,
        restored: str | None = None,
    ) -> dict[str, Any]:
        """Archive the current maps, write the new ones, point dataset.json at them."""
        record = self.files.new_record(item, kind, restored)
        for cls, current, new in plans:
            hist = self.files.history_rel(item, cls, record["id"])
            write_png(self.files.safe(hist), current)
            record["maps"][cls] = hist
            write_png(self.files.safe(self.files.map_rel(item, cls)), new)
        self._register(item, [c for c, _, _ in plans])
        return record

    def _register(self, item: Item, classes: Sequence[str]) -> None:
        """Point dataset.json at the saved maps (re-read first; caller holds the file lock)."""

        def missing(it: Item) -> list[str]:
            have = it.confidence if self.rater is None else it.raters.get(self.rater, {})
            return [c for c in classes if have.get(c) != self.files.map_rel(it, c)]

        if not missing(item):
            return
        ds = load_dataset(self.root, validate=False)
        it = ds.item(item.id)
        for c in missing(it):
            if self.rater is None:
                it.confidence[c] = self.files.map_rel(it, c)
            else:
                it.raters.setdefault(self.rater, {})[c] = self.files.map_rel(it, c)
        ds.save()
        self._reload()

    def _sidecar(self, item: Item, *, done: bool | None, record: dict[str, Any] | None) -> None:
        self.files.write_sidecar(
            item, classes=self.classes, done=done, record=record, history_limit=self.history_limit
        )
