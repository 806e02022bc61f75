"""Summarise a dataset: counts, per-class marked fraction and confidence histogram."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from confseg.data.dataset import Dataset
from confseg.io.images import read_percent_map


def dataset_info(ds: Dataset, *, progress: Callable[[int, int], None] | None = None
                 ) -> dict[str, Any]:
    """Describe a dataset as one JSON-able dict.

    Keys: ``name``, ``items``, ``image_items``, ``video_items``, ``patients``, ``views``,
    ``days``, ``raters``, ``has_clinical``, ``clinical_rows``, ``has_videos``, ``has_ignore``,
    ``has_truth``, ``classes`` (per class: ``marked_items``, ``marked_fraction`` of image
    pixels, ``levels``: sorted distinct percent values present (0 included when any pixel is
    unmarked), ``histogram``: percent -> pixel count over marked pixels).
    """
    hist = {c: np.zeros(256, dtype=np.int64) for c in ds.classes}
    marked_items = dict.fromkeys(ds.classes, 0)
    total_pixels = 0
    image_items = ds.image_items()
    for n, it in enumerate(image_items):
        h = w = None
        for cls in ds.classes:
            rel = it.confidence.get(cls)
            if rel is None:
                continue
            m = read_percent_map(ds.path(rel))
            h, w = m.shape
            counts = np.bincount(m.ravel(), minlength=256)
            hist[cls] += counts
            if counts[1:].any():
                marked_items[cls] += 1
        if h is None:
            h, w = ds.image_size(it)
        pixels = int(h) * int(w)
        total_pixels += pixels
        for cls in ds.classes:  # unmarked classes count as all-zero maps
            if cls not in it.confidence:
                hist[cls][0] += pixels
        if progress:
            progress(n + 1, len(image_items))
    classes = {}
    for cls in ds.classes:
        hc = hist[cls]
        marked = int(hc[1:].sum())
        classes[cls] = {
            "marked_items": marked_items[cls],
            "marked_fraction": marked / total_pixels if total_pixels else 0.0,
            "levels": [int(v) for v in np.flatnonzero(hc)],
            "histogram": {str(int(v)): int(hc[v]) for v in np.flatnonzero(hc[1:]) + 1},
        }
    clinical = ds.read_clinical()
    return {
        "name": ds.name,
        "root": str(ds.root),
        "items": len(ds.items),
        "image_items": len(image_items),
        "video_items": sum(1 for it in ds.items if it.video),
        "patients": len(ds.patients()),
        "views": sorted({it.view for it in ds.items}),
        "days": sorted({it.day for it in ds.items}),
        "raters": ds.raters(),
        "has_clinical": ds.clinical_path().exists(),
        "clinical_rows": len(clinical),
        "clinical_columns": list(clinical[0].keys()) if clinical else [],
        "has_videos": any(it.video for it in ds.items),
        "has_ignore": any(it.ignore for it in ds.items),
        "has_truth": any(it.truth for it in ds.items),
        "confidence_scale": [lv.value for lv in ds.scale],
        "classes": classes,
    }
