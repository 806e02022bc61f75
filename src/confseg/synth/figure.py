"""The synthetic data's example figure (docs/img/synth_example.png): rows spread over B-lines.

The generic figure (:func:`confseg.viz.overlay.save_example_figure`) knows nothing of lung
ultrasound; what is synthetic-specific (sorting by B-line count, the lung-water caption)
lives here.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from confseg.data import load_dataset
from confseg.data.schema import Item
from confseg.viz.overlay import pick_items, save_example_figure


def _meta(item: Item) -> dict[str, Any]:
    meta = item.extra.get("synth")
    return meta if isinstance(meta, dict) else {}


def by_blines(item: Item) -> tuple[int, str]:
    """Sort key: the item's number of simulated B-lines, then its id."""
    return int(_meta(item).get("b_lines", 0)), item.id


def synth_caption(item: Item) -> str:
    """``p000_v0_d0  (lung water 0.42, 3 B-lines)``; the bare id for a non-synthetic item."""
    meta = _meta(item)
    if "lung_water" not in meta:
        return item.id
    return f"{item.id}  (lung water {meta['lung_water']:.2f}, {meta.get('b_lines', 0)} B-lines)"


def save_synth_example(dataset_root: str | os.PathLike[str], out_png: str | os.PathLike[str],
                       n: int = 3, **kw: Any) -> Path:
    """The example figure of a synthetic dataset: ``n`` items from the fewest to the most B-lines.

    Args:
        dataset_root: A dataset written by :func:`confseg.synth.generate`.
        out_png: Figure to write.
        n: Number of rows.
        **kw: Passed on to :func:`confseg.viz.overlay.save_example_figure` (``colors``,
            ``alpha``, ``dpi``).
    """
    ds = load_dataset(dataset_root, validate=False)
    ids = [it.id for it in pick_items(ds, n, key=by_blines)]
    return save_example_figure(dataset_root, out_png, item_ids=ids, caption=synth_caption, **kw)
