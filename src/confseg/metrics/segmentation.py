"""Segmentation metrics: per-image statistics first, reduction second.

:func:`image_stats` turns one image (``prob``, ``conf`` of shape ``(K, H, W)``) into one flat
row per class; :func:`summarize` reduces rows to per-class means plus pooled values;
``confseg.metrics.bootstrap`` adds patient-level intervals.

Conventions:

* Prediction mask: ``prob > pred_threshold`` (strict; 0.5 by default).
* Reference at a level (:data:`LEVELS`): ``"any"`` is ``conf > 0``; a level ``t > 0`` is
  ``conf >= t - 1e-6``, so a pixel stored as 60 % (0.6 in float32) counts at 0.6.
* Empty vs empty: Dice and IoU are 1 when prediction and reference are both empty (also
  soft Dice when both sums are 0). Each row carries ``empty_ref@<level>`` (0/1) so a reducer
  can leave those images out (``exclude_empty_ref=True``).
* QUBIQ score: mean over ``t`` in 0.1, ..., 0.9 of ``Dice(prob > t, conf > t)``, both sides
  strictly above ``t`` as in the QUBIQ challenge evaluation and the public multi-rater code
  that reproduces it (``output > threshold``, ``mask > threshold``); 1e-6 of slack
  (``x > t + 1e-6``) keeps float32 storage from turning 20 % into "> 0.2". Empty vs empty at a
  threshold scores 1, as in the challenge's ``compute_dice``.
* HD95: ``max`` of the two directed 95th percentiles of boundary-to-boundary Euclidean
  distances (pixels), boundaries by binary erosion as in MONAI's
  ``compute_hausdorff_distance(..., percentile=95)``; between ``prob > pred_threshold`` and the
  reference at ``"any"``; NaN unless both are non-empty.
* Ignore mask: ignored pixels are removed from every statistic (for HD95 they are removed from
  both masks, so an ignore region cuts a mask and its boundary follows the cut).
* Calibration (ECE, adaptive ECE, Brier, NLL): see :mod:`confseg.metrics.calibration`.

Row keys: scalar metrics have plain names (see :func:`metric_names`), e.g. ``dice@0.6``,
``iou@any``, ``qubiq``, ``soft_dice``, ``ece``, ``hd95``, ``dice_truth``. Raw statistics for
pooling start with ``_`` (``_tp@0.6``, ``_bin_count`` ...; bin sums are arrays), so
:func:`public_row` (drop ``_`` keys) gives a flat CSV row.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage

from confseg.metrics.calibration import calibration_stats, ece_from_bins

LEVELS: tuple[tuple[str, float], ...] = (("any", 0.0), ("0.2", 0.2), ("0.4", 0.4), ("0.5", 0.5),
                                          ("0.6", 0.6), ("0.8", 0.8), ("1.0", 1.0))
LEVEL_EPS = 1e-6
QUBIQ_THRESHOLDS: tuple[float, ...] = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)

#: The headline metrics, in display order, with their labels. The summary's ``headline``, the
#: CLI table, the run report and the demo all show these (the ones a summary has).
HEADLINE: dict[str, str] = {
    "dice_truth": "Dice vs truth",
    "dice@any": "Dice vs label (any mark)",
    "dice@0.6": "Dice vs label ≥60%",
    "qubiq": "QUBIQ score",
    "soft_dice": "soft Dice",
    "hd95": "HD95 (px)",
    "ece": "ECE",
    "brier": "Brier",
}

__all__ = [
    "HEADLINE",
    "LEVELS",
    "QUBIQ_THRESHOLDS",
    "PooledMetric",
    "hd95",
    "image_stats",
    "metric_names",
    "metric_values",
    "pooled_metric",
    "pooled_names",
    "public_row",
    "qubiq_score",
    "raw_matrix",
    "reference_mask",
    "summarize",
]


def reference_mask(conf: np.ndarray, level: float) -> np.ndarray:
    """Binary reference at a confidence level (0 = every marked pixel)."""
    c = np.asarray(conf)
    return c > 0 if level <= 0 else c >= level - LEVEL_EPS


def _dice(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> np.ndarray:
    tp, fp, fn = (np.asarray(a, dtype=np.float64) for a in (tp, fp, fn))
    den = 2 * tp + fp + fn
    return np.where(den > 0, 2 * tp / np.where(den > 0, den, 1), 1.0)


def _iou(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> np.ndarray:
    tp, fp, fn = (np.asarray(a, dtype=np.float64) for a in (tp, fp, fn))
    den = tp + fp + fn
    return np.where(den > 0, tp / np.where(den > 0, den, 1), 1.0)


def _overlap(pred: np.ndarray, ref: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """tp, fp, fn over the last axis (broadcasting the leading axes)."""
    tp = np.count_nonzero(pred & ref, axis=-1)
    return tp, np.count_nonzero(pred, axis=-1) - tp, np.count_nonzero(ref, axis=-1) - tp


def qubiq_score(prob: np.ndarray, conf: np.ndarray) -> np.ndarray:
    """QUBIQ score per row of ``(K, N)`` arrays: mean Dice of ``prob > t`` vs ``conf > t``."""
    t = np.asarray(QUBIQ_THRESHOLDS)[:, None, None] + LEVEL_EPS
    p = np.asarray(prob)[None] > t
    c = np.asarray(conf)[None] > t
    return _dice(*_overlap(p, c)).mean(axis=0)


def hd95(pred: np.ndarray, ref: np.ndarray, *, percentile: float = 95.0) -> float:
    """Symmetric percentile Hausdorff distance (pixels) between two 2D/3D binary masks.

    Returns:
        ``max(P(d(pred -> ref)), P(d(ref -> pred)))`` over boundary pixels; NaN if a mask is empty.
    """
    a = np.asarray(pred, dtype=bool)
    b = np.asarray(ref, dtype=bool)
    if not a.any() or not b.any():
        return math.nan
    # Crop to the union's bounding box plus a 1-pixel False margin: distances between
    # boundary pixels do not change, the transforms get much smaller.
    box = ndimage.find_objects((a | b).astype(np.uint8))[0]
    a = np.pad(a[box], 1)
    b = np.pad(b[box], 1)
    ea = a & ~ndimage.binary_erosion(a)
    eb = b & ~ndimage.binary_erosion(b)
    d_ab = ndimage.distance_transform_edt(~eb)[ea]
    d_ba = ndimage.distance_transform_edt(~ea)[eb]
    return float(max(np.percentile(d_ab, percentile), np.percentile(d_ba, percentile)))


def _prepare(
    prob: np.ndarray, conf: np.ndarray, ignore: np.ndarray | None, truth: np.ndarray | None,
    n_classes: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]:
    p = np.asarray(prob)
    c = np.asarray(conf)
    if p.ndim == 2:
        p = p[None]
    if c.ndim == 2:
        c = c[None]
    if p.ndim != 3 or p.shape != c.shape:
        raise ValueError(f"prob {p.shape} and conf {c.shape} must both be (K, H, W)")
    if p.shape[0] != n_classes:
        raise ValueError(f"prob has {p.shape[0]} channels but {n_classes} classes were named")
    for name, a in (("prob", p), ("conf", c)):
        if a.size and not (a.min() >= 0 and a.max() <= 1):  # also catches NaN
            raise ValueError(f"{name} must lie in [0, 1] (probabilities after the sigmoid; "
                             f"confidence as a fraction), got [{a.min()}, {a.max()}]")
    valid = None
    if ignore is not None:
        ig = np.asarray(ignore, dtype=bool)
        if ig.shape != p.shape[1:]:
            raise ValueError(f"ignore {ig.shape} must be (H, W) = {p.shape[1:]}")
        valid = ~ig
    t = None
    if truth is not None:
        t = np.asarray(truth, dtype=bool)
        if t.ndim == 2:
            t = t[None]
        if t.shape != p.shape:
            raise ValueError(f"truth {t.shape} must match prob {p.shape}")
    return p, c, valid, t


def image_stats(
    prob: np.ndarray, conf: np.ndarray, *, ignore: np.ndarray | None = None,
    truth: np.ndarray | None = None, classes: Sequence[str], pred_threshold: float = 0.5,
    n_bins: int = 15,
) -> list[dict[str, Any]]:
    """All per-image statistics, one flat dict per class (see the module docstring).

    Args:
        prob: Predicted probability (after sigmoid), ``(K, H, W)``.
        conf: Reference confidence in [0, 1] (0 = not marked), ``(K, H, W)``.
        ignore: Optional ``(H, W)`` bool mask of pixels left out of every statistic.
        truth: Optional ``(K, H, W)`` bool ground truth (synthetic data).
        classes: The K class names, in channel order.
        pred_threshold: Prediction mask is ``prob > pred_threshold``.
        n_bins: Bins for ECE and adaptive ECE.

    Returns:
        K rows with ``class``, ``n_pixels``, the metrics of :func:`metric_names` and raw
        ``_``-prefixed statistics for pooling.

    Raises:
        ValueError: Shapes disagree with each other or with ``classes``.
    """
    classes = list(classes)
    p3, c3, valid, t3 = _prepare(prob, conf, ignore, truth, len(classes))
    k = len(classes)
    if valid is None:
        p = p3.reshape(k, -1)
        c = c3.reshape(k, -1)
        t = None if t3 is None else t3.reshape(k, -1)
    else:
        m = valid.ravel()
        p = p3.reshape(k, -1)[:, m]
        c = c3.reshape(k, -1)[:, m]
        t = None if t3 is None else np.ascontiguousarray(t3.reshape(k, -1)[:, m])
    # C order matters: boolean indexing returns pixel-strided arrays, 10x slower to reduce.
    p = np.ascontiguousarray(p, dtype=np.float64)
    c = np.ascontiguousarray(c, dtype=np.float64)
    n = p.shape[1]

    pred = p > pred_threshold
    refs = np.stack([reference_mask(c, lv) for _, lv in LEVELS])  # (L, K, N)
    tp, fp, fn = _overlap(pred[None], refs)  # (L, K)
    dice, iou = _dice(tp, fp, fn), _iou(tp, fp, fn)
    empty_ref = (tp + fn) == 0
    qubiq = qubiq_score(p, c)
    s_int, s_p, s_c = (p * c).sum(axis=1), p.sum(axis=1), c.sum(axis=1)
    s_den = s_p + s_c
    soft = np.where(s_den > 0, 2 * s_int / np.where(s_den > 0, s_den, 1), 1.0)
    cal = calibration_stats(p, c, n_bins)

    pred2d = p3 > pred_threshold
    ref2d = c3 > 0
    if valid is not None:
        pred2d = pred2d & valid
        ref2d = ref2d & valid
    if t is not None:
        ttp, tfp, tfn = _overlap(pred, t)
        rtp, rfp, rfn = _overlap(refs, t[None])
        ref_truth = _dice(rtp, rfp, rfn)  # (L, K)

    rows: list[dict[str, Any]] = []
    for j, name in enumerate(classes):
        row: dict[str, Any] = {"class": name, "n_pixels": int(n)}
        for i, (lv, _) in enumerate(LEVELS):
            row[f"dice@{lv}"] = float(dice[i, j])
            row[f"iou@{lv}"] = float(iou[i, j])
            row[f"empty_ref@{lv}"] = int(empty_ref[i, j])
            row[f"_tp@{lv}"] = int(tp[i, j])
            row[f"_fp@{lv}"] = int(fp[i, j])
            row[f"_fn@{lv}"] = int(fn[i, j])
        row["qubiq"] = float(qubiq[j])
        row["soft_dice"] = float(soft[j])
        row["_soft_inter"], row["_soft_sum_p"] = float(s_int[j]), float(s_p[j])
        row["_soft_sum_c"] = float(s_c[j])
        for key in ("ece", "aece", "brier", "nll"):
            row[key] = float(cal[key][j])
        row["_n"] = int(n)
        row["_brier_sum"], row["_nll_sum"] = float(cal["brier_sum"][j]), float(cal["nll_sum"][j])
        row["_bin_count"] = cal["bin_count"][j]
        row["_bin_sum_p"] = cal["bin_sum_p"][j]
        row["_bin_sum_c"] = cal["bin_sum_c"][j]
        row["hd95"] = hd95(pred2d[j], ref2d[j])
        if t is not None:
            row["dice_truth"] = float(_dice(ttp[j], tfp[j], tfn[j]))
            row["iou_truth"] = float(_iou(ttp[j], tfp[j], tfn[j]))
            row["_tp_truth"], row["_fp_truth"] = int(ttp[j]), int(tfp[j])
            row["_fn_truth"] = int(tfn[j])
            for i, (lv, _) in enumerate(LEVELS):
                row[f"ref_dice_truth@{lv}"] = float(ref_truth[i, j])
        rows.append(row)
    return rows


def metric_names(*, truth: bool = False) -> tuple[str, ...]:
    """Scalar metric keys of a row, in a stable column order (``truth``: synthetic-data keys)."""
    names = [f"dice@{lv}" for lv, _ in LEVELS] + [f"iou@{lv}" for lv, _ in LEVELS]
    names += ["qubiq", "soft_dice", "ece", "aece", "brier", "nll", "hd95"]
    if truth:
        names += ["dice_truth", "iou_truth"] + [f"ref_dice_truth@{lv}" for lv, _ in LEVELS]
    names += [f"empty_ref@{lv}" for lv, _ in LEVELS]
    return tuple(names)


def public_row(row: dict[str, Any]) -> dict[str, Any]:
    """The row without its raw ``_`` keys: flat scalars, ready for a CSV writer."""
    return {k: v for k, v in row.items() if not k.startswith("_")}


@dataclass(frozen=True, kw_only=True)
class PooledMetric:
    """A metric computed from raw statistics summed over images (and patients).

    Attributes:
        keys: Raw row keys to sum (scalars or arrays).
        reduce: Maps the summed values (each ``(..., width)``) to ``(...)`` metric values.
    """

    keys: tuple[str, ...]
    reduce: Callable[[list[np.ndarray]], np.ndarray]


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1), np.nan)


def _pooled_registry() -> dict[str, PooledMetric]:
    reg: dict[str, PooledMetric] = {}
    for lv, _ in LEVELS:
        keys = (f"_tp@{lv}", f"_fp@{lv}", f"_fn@{lv}")
        reg[f"dice_pooled@{lv}"] = PooledMetric(keys=keys, reduce=lambda s: _dice(*s)[..., 0])
        reg[f"iou_pooled@{lv}"] = PooledMetric(keys=keys, reduce=lambda s: _iou(*s)[..., 0])
    reg["dice_truth_pooled"] = PooledMetric(
        keys=("_tp_truth", "_fp_truth", "_fn_truth"), reduce=lambda s: _dice(*s)[..., 0])
    reg["soft_dice_pooled"] = PooledMetric(
        keys=("_soft_inter", "_soft_sum_p", "_soft_sum_c"),
        reduce=lambda s: np.where(s[1] + s[2] > 0, _ratio(2 * s[0], s[1] + s[2]), 1.0)[..., 0])
    reg["ece_pooled"] = PooledMetric(keys=("_bin_count", "_bin_sum_p", "_bin_sum_c"),
                                     reduce=lambda s: ece_from_bins(*s))
    reg["brier_pooled"] = PooledMetric(keys=("_brier_sum", "_n"),
                                       reduce=lambda s: _ratio(s[0], s[1])[..., 0])
    reg["nll_pooled"] = PooledMetric(keys=("_nll_sum", "_n"),
                                     reduce=lambda s: _ratio(s[0], s[1])[..., 0])
    return reg


_POOLED = _pooled_registry()


def pooled_metric(name: str) -> PooledMetric | None:
    """The pooled metric called ``name`` (e.g. ``dice_pooled@0.6``), or None."""
    return _POOLED.get(name)


def pooled_names(*, truth: bool = False) -> tuple[str, ...]:
    """Names of the pooled metrics (``truth``: include ``dice_truth_pooled``)."""
    return tuple(n for n in _POOLED if truth or n != "dice_truth_pooled")


def raw_matrix(rows: Sequence[dict[str, Any]], key: str) -> np.ndarray:
    """Raw statistic ``key`` of every row as an ``(n_rows, width)`` float array."""
    return np.stack([np.atleast_1d(np.asarray(r[key], dtype=np.float64)) for r in rows])


def metric_values(
    rows: Sequence[dict[str, Any]], name: str, *, exclude_empty_ref: bool = False
) -> np.ndarray:
    """Per-row values of a scalar metric as float64; NaN where undefined or excluded.

    Args:
        rows: Rows (one class).
        name: Metric key.
        exclude_empty_ref: Set ``dice@t`` / ``iou@t`` to NaN where ``empty_ref@t`` is 1.
    """
    vals = np.array([r.get(name, math.nan) for r in rows], dtype=np.float64)
    if exclude_empty_ref and "@" in name and name.split("@")[0] in ("dice", "iou"):
        flag = f"empty_ref@{name.split('@', 1)[1]}"
        vals[np.array([bool(r.get(flag, 0)) for r in rows], dtype=bool)] = np.nan
    return vals


def summarize(
    rows: Sequence[dict[str, Any]], *, classes: Sequence[str] | None = None,
    exclude_empty_ref: bool = False,
) -> dict[str, dict[str, float]]:
    """Reduce per-image rows: per class, mean over images of each metric, plus pooled metrics.

    Means skip NaN (e.g. an undefined HD95); a metric with no defined value is NaN. Pooled
    metrics (:func:`pooled_names`) sum raw statistics over all images first. ``n_images``
    counts the rows of the class.

    Args:
        rows: Rows from :func:`image_stats` for any number of images.
        classes: Classes to report (default: in order of first appearance).
        exclude_empty_ref: Leave images with an empty reference out of ``dice@t``/``iou@t``.

    Returns:
        ``{class: {metric: value}}``.
    """
    if classes is None:
        classes = list(dict.fromkeys(r["class"] for r in rows))
    out: dict[str, dict[str, float]] = {}
    for cls in classes:
        sel = [r for r in rows if r["class"] == cls]
        has_truth = bool(sel) and all("dice_truth" in r for r in sel)
        res: dict[str, float] = {"n_images": float(len(sel))}
        for name in metric_names(truth=has_truth):
            v = metric_values(sel, name, exclude_empty_ref=exclude_empty_ref)
            res[name] = float(np.nanmean(v)) if np.isfinite(v).any() else math.nan
        for name in pooled_names(truth=has_truth):
            pm = _POOLED[name]
            if not sel:
                res[name] = math.nan
                continue
            sums = [raw_matrix(sel, key).sum(axis=0) for key in pm.keys]
            res[name] = float(pm.reduce(sums))
        out[cls] = res
    return out
