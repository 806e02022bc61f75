"""Confidence overlays: colour per class, opacity by confidence; a small example figure."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from confseg.data import Dataset, load_dataset
from confseg.data.schema import Item
from confseg.io.atomic import atomic_path

DEFAULT_COLORS: tuple[tuple[int, int, int], ...] = (
    (255, 200, 0),    # amber
    (0, 190, 255),    # sky blue
    (255, 60, 170),   # magenta
    (90, 230, 90),    # green
    (170, 120, 255),  # violet
    (255, 120, 40),   # orange
)
LEVELS = (20, 40, 60, 80, 100)


def _as_rgb(image: np.ndarray) -> np.ndarray:
    """Any grey/RGB(A) image -> float32 RGB in 0..255."""
    img = np.asarray(image)
    if img.ndim == 3 and img.shape[-1] in (3, 4):
        img = img[..., :3]
    elif img.ndim == 3 and img.shape[-1] == 1:
        img = img[..., 0]
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=-1)
    if img.ndim != 3:
        raise ValueError(f"image must be (H, W) or (H, W, 3), got shape {np.shape(image)}")
    if img.dtype == np.uint8:
        return img.astype(np.float32)
    x = img.astype(np.float32)
    if np.issubdtype(img.dtype, np.floating) and x.size and float(np.nanmax(x)) <= 1.0:
        return np.clip(x, 0.0, 1.0) * 255.0
    top = float(x.max()) if x.size else 0.0
    return x * (255.0 / top) if top > 0 else x


def class_colors(n: int, colors: Sequence[Sequence[int]] | None = None
                 ) -> list[tuple[int, int, int]]:
    """``n`` RGB colours: ``colors`` if given, else the default palette (cycled)."""
    pal = list(colors) if colors is not None else list(DEFAULT_COLORS)
    if not pal:
        raise ValueError("colors must not be empty")
    return [tuple(int(c) for c in pal[i % len(pal)][:3]) for i in range(n)]  # type: ignore[misc]


def overlay_confidence(image: np.ndarray, conf: np.ndarray, *,
                       colors: Sequence[Sequence[int]] | None = None, alpha: float = 0.6
                       ) -> np.ndarray:
    """Blend per-class confidence onto an image.

    Each class is painted in its colour with opacity ``alpha * confidence`` (classes are
    blended in order, later ones on top), so a 20 % mark is a faint tint and a 100 %
    mark is a strong one.

    Args:
        image: ``(H, W)`` grey or ``(H, W, 3)`` RGB; uint8, or float in [0, 1].
        conf: ``(K, H, W)`` (or ``(H, W)`` for one class) confidence in [0, 1].
        colors: One RGB triple (0..255) per class; defaults to a fixed palette.
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


def pick_items(ds: Dataset, n: int) -> list[Item]:
    """``n`` image items spread over the dataset; for synthetic data, over B-line counts."""
    items = ds.image_items()
    if n <= 0 or not items:
        return []
    if all(isinstance(it.extra.get("synth"), dict) for it in items):
        items = sorted(items, key=lambda it: (it.extra["synth"].get("b_lines", 0), it.id))
    pos = np.linspace(0, len(items) - 1, min(n, len(items)))
    return [items[int(np.rint(p))] for p in pos]


def _legend(ax: plt.Axes, classes: Sequence[str], conf: np.ndarray,
            colors: list[tuple[int, int, int]], alpha: float) -> None:
    """Per class: swatches of the five levels over mid-grey, with this item's pixel shares."""
    k = len(classes)
    sw = np.full((k, len(LEVELS), 3), 110.0, dtype=np.float32)
    for i, col in enumerate(colors):
        for j, lv in enumerate(LEVELS):
            a = alpha * lv / 100.0
            sw[i, j] = sw[i, j] * (1 - a) + np.asarray(col) * a
    ax.imshow(sw.astype(np.uint8), aspect="auto", extent=(0, len(LEVELS), k, 0))
    pct = np.rint(conf * 100).astype(np.int64)
    for i in range(k):
        marked = int((pct[i] > 0).sum())
        for j, lv in enumerate(LEVELS):
            text = f"{100.0 * int((pct[i] == lv).sum()) / marked:.0f}%" if marked else "-"
            ax.text(j + 0.5, i + 0.5, text, ha="center", va="center", fontsize=6, color="white")
    ax.set_xticks(np.arange(len(LEVELS)) + 0.5, [f"{lv}" for lv in LEVELS], fontsize=6)
    ax.set_yticks(np.arange(k) + 0.5, [c.replace("_", " ") for c in classes], fontsize=7)
    ax.tick_params(length=0)
    ax.set_xlabel("confidence level (share of marked px)", fontsize=6)
    for spine in ax.spines.values():
        spine.set_visible(False)


def save_example_figure(dataset_root: str | os.PathLike[str], out_png: str | os.PathLike[str],
                        n: int = 3, *, item_ids: Sequence[str] | None = None,
                        colors: Sequence[Sequence[int]] | None = None, alpha: float = 0.6,
                        dpi: int = 90) -> Path:
    """Render image | confidence overlay | true masks (if any) | legend for a few items.

    Args:
        dataset_root: A native dataset folder.
        out_png: Figure to write (atomically).
        n: Number of items (rows) when ``item_ids`` is not given.
        item_ids: Items to show, in order.
        colors: Class colours (see :func:`overlay_confidence`).
        alpha: Opacity of a 100 % mark.
        dpi: Resolution of the saved figure.

    Returns:
        ``out_png`` as a Path.
    """
    ds = load_dataset(dataset_root, validate=False)
    items = [ds.item(i) for i in item_ids] if item_ids is not None else pick_items(ds, n)
    if not items:
        raise ValueError(f"{dataset_root}: no image items to show")
    cols = class_colors(len(ds.classes), colors)
    has_truth = any(it.truth for it in items)
    ncol = 4 if has_truth else 3
    fig, axes = plt.subplots(len(items), ncol, figsize=(2.3 * (ncol - 1) + 2.9,
                                                        2.35 * len(items)), squeeze=False,
                             layout="constrained",
                             gridspec_kw={"width_ratios": [1] * (ncol - 1) + [1.1]})
    for row, it in zip(axes, items, strict=True):
        img = ds.read_image(it)
        conf = ds.read_confidence_stack(it)
        panels = [(img, "image"), (overlay_confidence(img, conf, colors=cols, alpha=alpha),
                                   "annotator confidence")]
        if has_truth:
            truth = np.stack([(ds.read_truth(it, c) if c in it.truth
                               else np.zeros(img.shape[:2], bool)) for c in ds.classes])
            panels.append((overlay_confidence(img, truth.astype(np.float32), colors=cols,
                                              alpha=alpha), "true masks"))
        meta = it.extra.get("synth", {})
        info = f"{it.id}"
        if isinstance(meta, dict) and "lung_water" in meta:
            info += f"  (lung water {meta['lung_water']:.2f}, {meta.get('b_lines', 0)} B-lines)"
        for j, (ax, (arr, title)) in enumerate(zip(row, panels, strict=False)):
            ax.imshow(arr, cmap="gray" if arr.ndim == 2 else None, vmin=0, vmax=255,
                      interpolation="nearest")
            ax.set_title(info if j == 0 else title, fontsize=7, loc="left")
            ax.axis("off")
        _legend(row[-1], ds.classes, conf, cols, alpha)
    with atomic_path(out_png, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=dpi)
    plt.close(fig)
    return Path(out_png)
