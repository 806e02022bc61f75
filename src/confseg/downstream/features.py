"""Per-frame features of lung-ultrasound segmentations: probabilities in, named floats out.

:func:`frame_features` turns one frame's class probabilities ``(K, H, W)`` into a flat
``{name: float}`` dict; :func:`raw_image_features` is the no-segmentation baseline on the grey
frame itself. :data:`FEATURE_DOCS` defines every name (``<cls>`` stands for any class name).

Conventions:

* Mask of a class: ``prob >= threshold`` (0.5 by default).
* Shape features (``b_line.*``, ``pleural_line.*``, ``a_line.*``) use the mask after removing
  specks: 8-connected components smaller than ``min_size`` pixels (by default 0.02 % of the
  frame, at least 4 pixels). ``<cls>.area``, ``mean_prob`` and ``max_prob`` use every pixel.
* A component is vertical when its bounding box is taller than wide, horizontal when wider
  than tall (a square box is neither). Its width is its mean number of pixels per row.
* Lengths are fractions: horizontal ones of the frame width, vertical ones of the frame height.
* NaN where a feature is undefined (a width with no B-line, a spacing with fewer than two
  A-lines, a continuity with no pleural line); counts and coverages of nothing are 0.
* Intensities are in [0, 1]: ``uint8`` / 255, other integers / their dtype's maximum, floats as
  they are when at most 1, else / 255.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
from scipy import ndimage

NAN = float("nan")
SPECK_FRACTION = 2e-4  # default min_size: this fraction of the frame's pixels ...
SPECK_MIN_PIXELS = 4  # ... and at least this many
BAND_FRACTION = 0.1  # height of the band below the pleural line, fraction of the frame height
BRIGHT = 0.7  # raw.bright_frac: intensity above this
_EIGHT = np.ones((3, 3), dtype=bool)

FEATURE_DOCS: dict[str, str] = {
    "<cls>.area": "fraction of frame pixels with probability >= threshold",
    "<cls>.mean_prob": "mean probability over the frame",
    "<cls>.max_prob": "largest probability in the frame",
    "b_line.count": "number of vertical B-line components (taller than wide, specks removed)",
    "b_line.width_mean": "mean width (pixels per row) of the B-lines / frame width; NaN if none",
    "b_line.width_max": "largest width (pixels per row) of a B-line / frame width; NaN if none",
    "b_line.coverage": "columns containing a B-line / columns with image content (any pixel "
    "> 0; every column without an image or with a black one)",
    "b_line.depth": "mean distance from the pleural line's mean row down to each B-line's lowest "
    "row / frame height (no pleural line: mean B-line height / frame height); NaN if none",
    "pleural_line.length": "columns containing pleural line / frame width",
    "pleural_line.continuity": "fraction of the columns from the leftmost to the rightmost "
    "pleural-line column that contain pleural line (1 = continuous); NaN if none",
    "pleural_line.gaps": "number of runs of empty columns inside the pleural line's column span; "
    "NaN if none",
    "pleural_line.thickness": "mean pleural-line pixels per occupied column / frame height",
    "pleural_line.irregularity": "std of the per-column centre row about its degree-2 "
    "polynomial fit over the columns / frame height; NaN under 3 columns",
    "pleural_line.brightness_below": "mean intensity (0-1) of the band of 10 % of the frame "
    "height right below the pleural line's lowest pixel in each column (only with an image)",
    "a_line.count": "number of horizontal A-line components (wider than tall, specks removed)",
    "a_line.spacing": "mean row distance between successive A-line centres (sorted by depth) / "
    "frame height; NaN under 2 A-lines",
    "raw.mean": "mean intensity (0-1) over the content columns (columns with any pixel > 0)",
    "raw.std": "standard deviation of the intensity over the content columns",
    "raw.p10": "10th percentile of the intensity over the content columns",
    "raw.p50": "median intensity over the content columns",
    "raw.p90": "90th percentile of the intensity over the content columns",
    "raw.bright_frac": "fraction of content-column pixels brighter than 0.7",
    "raw.grad_v": "mean absolute difference between vertically adjacent pixels (content columns)",
    "raw.top_mean": "mean intensity of the top third of the rows (content columns)",
    "raw.mid_mean": "mean intensity of the middle third of the rows (content columns)",
    "raw.bottom_mean": "mean intensity of the bottom third of the rows (content columns)",
    "acq.frames": "per video (acquisition control, no pixels): frame count the file declares",
    "acq.fps": "per video (acquisition control): frame rate the file declares",
    "acq.seconds": "per video (acquisition control): duration, frames / rate",
    "acq.width": "per video (acquisition control): frame width in pixels",
    "acq.height": "per video (acquisition control): frame height in pixels",
}

_PATTERNS = [(re.compile("^" + re.escape(k).replace("<cls>", "[^.]+") + "$"), k)
             for k in sorted(FEATURE_DOCS, key=lambda k: "<cls>" in k)]


def feature_doc(name: str) -> str | None:
    """The definition of a frame or raw feature name (``pleural_line.area`` ...), or None."""
    for pattern, key in _PATTERNS:
        if pattern.match(name):
            return FEATURE_DOCS[key]
    return None


class _Component(NamedTuple):
    label: int
    top: int  # first row
    bottom: int  # last row
    width: float  # pixels per occupied row
    centre: float  # mean row of its pixels


def unit_image(image: np.ndarray) -> np.ndarray:
    """A grey frame as float64 in [0, 1] (see the module's intensity convention)."""
    img = np.asarray(image)
    if img.dtype == np.bool_:
        return img.astype(np.float64)
    if np.issubdtype(img.dtype, np.integer):
        scale = 255.0 if img.dtype == np.uint8 else float(np.iinfo(img.dtype).max)
        return np.clip(img / scale, 0.0, 1.0)
    out = img.astype(np.float64)
    if out.size and np.nanmax(out) > 1.0:
        out = out / 255.0
    return np.clip(out, 0.0, 1.0)


def _labels(mask: np.ndarray, min_size: int) -> tuple[np.ndarray, int]:
    """8-connected components of ``mask`` without those under ``min_size`` pixels."""
    labels, n = ndimage.label(mask, structure=_EIGHT)
    if n == 0:
        return labels, 0
    keep = np.bincount(labels.ravel(), minlength=n + 1) >= min_size
    keep[0] = False
    relabel = np.zeros(n + 1, dtype=labels.dtype)
    relabel[keep] = np.arange(1, int(keep.sum()) + 1)
    return relabel[labels], int(keep.sum())


def _components(labels: np.ndarray, n: int, *, vertical: bool) -> list[_Component]:
    """The vertical (taller than wide) or horizontal (wider than tall) components."""
    out = []
    for i, box in enumerate(ndimage.find_objects(labels, max_label=n), start=1):
        if box is None:
            continue
        h, w = box[0].stop - box[0].start, box[1].stop - box[1].start
        if (h <= w) if vertical else (w <= h):
            continue
        per_row = (labels[box] == i).sum(axis=1)
        centre = box[0].start + float(per_row @ np.arange(h)) / per_row.sum()
        out.append(_Component(i, box[0].start, box[0].stop - 1,
                              float(per_row.sum() / np.count_nonzero(per_row)), centre))
    return out


def _pleural(mask: np.ndarray, image: np.ndarray | None) -> tuple[dict[str, float], float | None]:
    """``pleural_line.*`` features and the line's mean row (None when there is no line)."""
    h, w = mask.shape
    per_col = mask.sum(axis=0)
    occupied = per_col > 0
    f = {"pleural_line.length": float(occupied.sum() / w)}
    rows = np.arange(h, dtype=np.float64)
    if not occupied.any():
        f.update({f"pleural_line.{k}": NAN
                  for k in ("continuity", "gaps", "thickness", "irregularity")})
        if image is not None:
            f["pleural_line.brightness_below"] = NAN
        return f, None
    cols = np.flatnonzero(occupied)
    span = occupied[cols[0]:cols[-1] + 1]
    f["pleural_line.continuity"] = float(span.mean())
    f["pleural_line.gaps"] = float(np.count_nonzero(span[:-1] & ~span[1:]))
    f["pleural_line.thickness"] = float(per_col[cols].mean() / h)
    centre = (rows @ mask.astype(np.float64))[cols] / per_col[cols]
    if cols.size >= 3:
        x = cols - cols.mean()
        resid = centre - np.polyval(np.polyfit(x, centre, 2), x)
        f["pleural_line.irregularity"] = float(resid.std() / h)
    else:
        f["pleural_line.irregularity"] = NAN
    if image is not None:
        lowest = h - 1 - np.argmax(mask[::-1], axis=0)
        depth = rows[:, None] - lowest[None, :]
        band = (depth > 0) & (depth <= max(1, round(BAND_FRACTION * h))) & occupied[None, :]
        f["pleural_line.brightness_below"] = float(image[band].mean()) if band.any() else NAN
    return f, float(rows @ mask.sum(axis=1) / per_col.sum())


def _b_line(labels: np.ndarray, n: int, pleura_row: float | None,
            content: np.ndarray) -> dict[str, float]:
    """``b_line.*`` features from the cleaned component labels."""
    h, w = labels.shape
    comps = _components(labels, n, vertical=True)
    widths = np.array([c.width for c in comps])
    if pleura_row is None:
        depths = np.array([c.bottom - c.top + 1 for c in comps], dtype=np.float64)
    else:
        depths = np.array([max(0.0, c.bottom - pleura_row) for c in comps])
    covered = np.isin(labels, [c.label for c in comps]).any(axis=0)
    return {
        "b_line.count": float(len(comps)),
        "b_line.width_mean": float(widths.mean() / w) if comps else NAN,
        "b_line.width_max": float(widths.max() / w) if comps else NAN,
        "b_line.coverage": float(np.count_nonzero(covered & content) / np.count_nonzero(content)),
        "b_line.depth": float(depths.mean() / h) if comps else NAN,
    }


def _a_line(labels: np.ndarray, n: int) -> dict[str, float]:
    """``a_line.*`` features from the cleaned component labels."""
    comps = _components(labels, n, vertical=False)
    centres = np.sort([c.centre for c in comps])
    spacing = float(np.diff(centres).mean() / labels.shape[0]) if len(comps) >= 2 else NAN
    return {"a_line.count": float(len(comps)), "a_line.spacing": spacing}


def frame_features(prob: np.ndarray, classes: Sequence[str], *, image: np.ndarray | None = None,
                   threshold: float = 0.5, min_size: int | None = None) -> dict[str, float]:
    """Named features of one frame's segmentation (see :data:`FEATURE_DOCS`).

    Args:
        prob: ``(K, H, W)`` probabilities in [0, 1], one channel per class in ``classes``.
        classes: the K class names; ``b_line``, ``pleural_line`` and ``a_line`` get shape
            features, every class gets ``<cls>.area``, ``mean_prob`` and ``max_prob``.
        image: optional ``(H, W)`` grey frame: the sector for ``b_line.coverage`` and the
            intensities for ``pleural_line.brightness_below``.
        threshold: a pixel belongs to a class's mask when its probability is at least this.
        min_size: components under this many pixels are specks (default: 0.02 % of the frame,
            at least 4 pixels).

    Returns:
        A flat dict of floats, NaN where a feature is undefined.

    Raises:
        ValueError: shapes disagree, class names repeat, or probabilities leave [0, 1].
    """
    p = np.asarray(prob, dtype=np.float64)
    names = list(classes)
    if p.ndim != 3 or p.shape[1] == 0 or p.shape[2] == 0:
        raise ValueError(f"prob {p.shape} must be (K, H, W) with H, W > 0")
    if p.shape[0] != len(names) or len(set(names)) != len(names):
        raise ValueError(f"prob has {p.shape[0]} channels; classes must be as many distinct "
                         f"names, got {names}")
    if p.size and (np.isnan(p).any() or p.min() < 0.0 or p.max() > 1.0):
        raise ValueError("prob must lie in [0, 1] (probabilities, not logits)")
    h, w = p.shape[1:]
    img = None
    if image is not None:
        img = np.asarray(image)
        if img.shape != (h, w):
            raise ValueError(f"image {img.shape} must be (H, W) = {(h, w)}")
    if min_size is None:
        min_size = max(SPECK_MIN_PIXELS, round(SPECK_FRACTION * h * w))
    masks = p >= threshold
    out: dict[str, float] = {}
    for k, cls in enumerate(names):
        out[f"{cls}.area"] = float(masks[k].mean())
        out[f"{cls}.mean_prob"] = float(p[k].mean())
        out[f"{cls}.max_prob"] = float(p[k].max())
    pleura_row = None
    if "pleural_line" in names:
        labels, _ = _labels(masks[names.index("pleural_line")], min_size)
        f, pleura_row = _pleural(labels > 0, None if img is None else unit_image(img))
        out.update(f)
    if "b_line" in names:
        content = np.ones(w, dtype=bool) if img is None else (img > 0).any(axis=0)
        if not content.any():  # a black frame: every column, as without an image
            content[:] = True
        out.update(_b_line(*_labels(masks[names.index("b_line")], min_size), pleura_row, content))
    if "a_line" in names:
        out.update(_a_line(*_labels(masks[names.index("a_line")], min_size)))
    return out


def raw_image_features(image: np.ndarray) -> dict[str, float]:
    """Image statistics of a raw grey frame, the baseline without segmentation.

    Every statistic is taken over the content columns (those with any pixel > 0; every column
    when the frame is black), so black letterbox bars beside the sector do not count.

    Args:
        image: ``(H, W)`` grey frame (uint8 or float).

    Returns:
        ``raw.*`` features (see :data:`FEATURE_DOCS`); NaN for a gradient or third that the
        frame is too short to have.

    Raises:
        ValueError: the image is not a non-empty 2-D array.
    """
    img = np.asarray(image)
    if img.ndim != 2 or img.size == 0:
        raise ValueError(f"image {img.shape} must be a non-empty grey (H, W) frame")
    content = (img > 0).any(axis=0)
    region = unit_image(img)[:, content if content.any() else slice(None)]
    p10, p50, p90 = np.percentile(region, [10, 50, 90])
    thirds = [float(t.mean()) if t.size else NAN for t in np.array_split(region, 3, axis=0)]
    grad = float(np.abs(np.diff(region, axis=0)).mean()) if region.shape[0] > 1 else NAN
    return {
        "raw.mean": float(region.mean()),
        "raw.std": float(region.std()),
        "raw.p10": float(p10),
        "raw.p50": float(p50),
        "raw.p90": float(p90),
        "raw.bright_frac": float((region > BRIGHT).mean()),
        "raw.grad_v": grad,
        "raw.top_mean": thirds[0],
        "raw.mid_mean": thirds[1],
        "raw.bottom_mean": thirds[2],
    }


def acquisition_features(*, frames: int | None, fps: float | None, width: int, height: int,
                         seconds: float | None = None) -> dict[str, float]:
    """How a video was recorded, from its header alone: the acquisition-only control.

    Missing values are NaN; ``seconds`` defaults to ``frames / fps``.
    """
    n = NAN if frames is None else float(frames)
    rate = NAN if not fps else float(fps)
    if seconds is None:
        seconds = n / rate if rate == rate and n == n else NAN
    return {"acq.frames": n, "acq.fps": rate, "acq.seconds": float(seconds),
            "acq.width": float(width), "acq.height": float(height)}
