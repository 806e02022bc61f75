"""Confidence overlays: colour per class, opacity by confidence; a small example figure."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from confseg.data import Dataset, load_dataset
from confseg.data.schema import Item
from confseg.io.atomic import atomic_path
from confseg.preprocess import to_display
from confseg.viz.palette import PALETTE, class_colours

#: The class palette and its helper, under the names overlay callers use.
DEFAULT_COLORS = PALETTE
class_colors = class_colours


def _as_rgb(image: np.ndarray) -> np.ndarray:
    """Any grey/RGB(A) image -> float32 RGB in 0..255, scaled by :func:`to_display`."""
    img = np.asarray(image)
    if not (img.ndim == 2 or (img.ndim == 3 and img.shape[-1] in (1, 3, 4))):
        raise ValueError(f"image must be (H, W) or (H, W, 3), got shape {np.shape(image)}")
    shown = to_display(img)
    if shown.ndim == 2:
        shown = np.repeat(shown[..., None], 3, axis=-1)
    return shown.astype(np.float32)


def overlay_confidence(image: np.ndarray, conf: np.ndarray, *,
                       colors: Sequence[Sequence[int]] | None = None, alpha: float = 0.6
                       ) -> np.ndarray:
    """Blend per-class confidence onto an image.

    Each class is painted in its colour with opacity ``alpha * confidence`` (classes are
    blended in order, later ones on top), so a 20 % mark is a faint tint and a 100 %
    mark is a strong one.

    Args:
        image: ``(H, W)`` grey or ``(H, W, 3)`` RGB; uint8, or float in [0, 1] (other
            dtypes are scaled as the model sees them, by :func:`confseg.preprocess.to_display`).
        conf: ``(K, H, W)`` (or ``(H, W)`` for one class) confidence in [0, 1].
        colors: One RGB triple (0..255) per class; defaults to the class palette.
        alpha: Opacity of a 100 % mark.

    Returns:
        ``(H, W, 3)`` uint8 RGB.
    """
    rgb = _as_rgb(image)
    c = np.asarray(conf, dtype=np.float32)
    if c.ndim == 2:
        c = c[None]
    if c.ndim != 3 or c.shape[1:] != rgb.shape[:2]:
        raise ValueError(f"conf must be (K, H, W) matching the image {rgb.shape[:2]}, "
                         f"got {np.shape(conf)}")
    if c.size and (float(np.nanmin(c)) < 0.0 or float(np.nanmax(c)) > 1.0):
        raise ValueError("conf must lie in [0, 1]")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must lie in [0, 1], got {alpha}")
    out = rgb
    for k, col in enumerate(class_colors(c.shape[0], colors)):
        a = (alpha * np.nan_to_num(c[k]))[..., None]
        out = out * (1.0 - a) + np.asarray(col, dtype=np.float32) * a
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def pick_items(ds: Dataset, n: int, *, key: Callable[[Item], Any] | None = None
               ) -> list[Item]:
    """``n`` image items spread evenly over the dataset.

    Args:
        ds: The dataset.
        n: How many items.
        key: Sort key; the items are spread over this order (e.g. from the fewest to the
            most marked structures). Default: dataset order.
    """
    items = ds.image_items()
    if n <= 0 or not items:
        return []
    if key is not None:
        items = sorted(items, key=key)
    pos = np.linspace(0, len(items) - 1, min(n, len(items)))
    return [items[int(np.rint(p))] for p in pos]


def level_shares(conf: np.ndarray, levels: Sequence[int]) -> np.ndarray:
    """Per class, the share (percent) of marked pixels at each confidence level.

    Args:
        conf: ``(K, H, W)`` confidence in [0, 1] (as read from percent maps).
        levels: The scale's values in percent (``[lv.value for lv in ds.scale]``).

    Returns:
        ``(K, len(levels))`` float64; NaN for a class with no marked pixel.
    """
    pct = np.rint(np.asarray(conf, dtype=np.float64) * 100).astype(np.int64)
    pct = pct.reshape(pct.shape[0], -1)
    out = np.full((pct.shape[0], len(levels)), np.nan)
    for i, row in enumerate(pct):
        marked = int((row > 0).sum())
        if marked:
            out[i] = [100.0 * int((row == lv).sum()) / marked for lv in levels]
    return out


def _legend(ax: plt.Axes, classes: Sequence[str], conf: np.ndarray,
            colors: list[tuple[int, int, int]], alpha: float, levels: Sequence[int]) -> None:
    """Per class: swatches of the scale's levels over mid-grey, with this item's pixel shares."""
    k, n_lv = len(classes), len(levels)
    sw = np.full((k, n_lv, 3), 110.0, dtype=np.float32)
    for i, col in enumerate(colors):
        for j, lv in enumerate(levels):
            a = alpha * lv / 100.0
            sw[i, j] = sw[i, j] * (1 - a) + np.asarray(col) * a
    ax.imshow(sw.astype(np.uint8), aspect="auto", extent=(0, n_lv, k, 0))
    shares = level_shares(conf, levels)
    for i in range(k):
        for j in range(n_lv):
            text = "-" if np.isnan(shares[i, j]) else f"{shares[i, j]:.0f}%"
            ax.text(j + 0.5, i + 0.5, text, ha="center", va="center", fontsize=6, color="white")
    ax.set_xticks(np.arange(n_lv) + 0.5, [f"{lv}" for lv in levels], fontsize=6)
    ax.set_yticks(np.arange(k) + 0.5, [c.replace("_", " ") for c in classes], fontsize=7)
    ax.tick_params(length=0)
    ax.set_xlabel("confidence level (share of marked px)", fontsize=6)
    for spine in ax.spines.values():
        spine.set_visible(False)


def save_example_figure(dataset_root: str | os.PathLike[str], out_png: str | os.PathLike[str],
                        n: int = 3, *, item_ids: Sequence[str] | None = None,
                        colors: Sequence[Sequence[int]] | None = None, alpha: float = 0.6,
                        caption: Callable[[Item], str] | None = None, dpi: int = 90) -> Path:
    """Render image | confidence overlay | true masks (if any) | legend for a few items.

    Args:
        dataset_root: A native dataset folder.
        out_png: Figure to write (atomically).
        n: Number of items (rows) when ``item_ids`` is not given (spread over the dataset
            by :func:`pick_items`).
        item_ids: Items to show, in order.
        colors: Class colours (see :func:`overlay_confidence`).
        alpha: Opacity of a 100 % mark.
        caption: Title of a row's first panel, from its item (default: the item id).
        dpi: Resolution of the saved figure.

    Returns:
        ``out_png`` as a Path.
    """
    ds = load_dataset(dataset_root, validate=False)
    items = [ds.item(i) for i in item_ids] if item_ids is not None else pick_items(ds, n)
    if not items:
        raise ValueError(f"{dataset_root}: no image items to show")
    cols = class_colors(len(ds.classes), colors)
    levels = [lv.value for lv in ds.scale]
    has_truth = any(it.truth for it in items)
    ncol = 4 if has_truth else 3
    fig, axes = plt.subplots(len(items), ncol, figsize=(2.3 * (ncol - 1) + 2.9,
                                                        2.35 * len(items)), squeeze=False,
                             layout="constrained",
                             gridspec_kw={"width_ratios": [1] * (ncol - 1) + [1.1]})
    for row, it in zip(axes, items, strict=True):
        img = to_display(ds.read_image(it))
        conf = ds.read_confidence_stack(it)
        panels = [(img, "image"), (overlay_confidence(img, conf, colors=cols, alpha=alpha),
                                   "annotator confidence")]
        if has_truth:
            truth = np.stack([(ds.read_truth(it, c) if c in it.truth
                               else np.zeros(img.shape[:2], bool)) for c in ds.classes])
            panels.append((overlay_confidence(img, truth.astype(np.float32), colors=cols,
                                              alpha=alpha), "true masks"))
        info = caption(it) if caption is not None else it.id
        for j, (ax, (arr, title)) in enumerate(zip(row, panels, strict=False)):
            ax.imshow(arr, cmap="gray" if arr.ndim == 2 else None, vmin=0, vmax=255,
                      interpolation="nearest")
            ax.set_title(info if j == 0 else title, fontsize=7, loc="left")
            ax.axis("off")
        _legend(row[-1], ds.classes, conf, cols, alpha, levels)
    with atomic_path(out_png, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=dpi)
    plt.close(fig)
    return Path(out_png)
