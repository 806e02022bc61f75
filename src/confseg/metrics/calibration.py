"""Calibration of predicted probabilities against a confidence map (soft target).

Every function treats the reference confidence ``c`` in [0, 1] as the soft target: the
"observed frequency" of a bin is the mean of ``c`` over its pixels, Brier is
``mean((p - c)^2)`` and NLL is the cross-entropy ``-(c log p + (1 - c) log(1 - p))``, whose
minimum is the entropy of ``c`` (not 0) when ``c`` is fractional. All pixels of an image
count (background included), which is the usual pixel-wise segmentation calibration.

Arrays are ``(K, N)``: K classes, N pixels (already flattened, ignored pixels removed), so
every statistic is computed for all classes at once.

Pooling across images: equal-width ECE is pooled exactly from the per-image bin sums
(``ECE = sum_b |sum p - sum c| / N`` over the summed bins). Adaptive (equal-mass) ECE has
no such sufficient statistic; its pooled value is the mean of the per-image values.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

NLL_EPS = 1e-7  # probabilities are clipped to [NLL_EPS, 1 - NLL_EPS] for the NLL

__all__ = [
    "NLL_EPS",
    "adaptive_ece",
    "calibration_stats",
    "curve_from_bins",
    "ece_from_bins",
    "reliability_bins",
    "reliability_curve",
]


def _as_2d(x: np.ndarray) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64)
    return a.reshape(1, -1) if a.ndim == 1 else a


def ece_from_bins(count: np.ndarray, sum_p: np.ndarray, sum_c: np.ndarray) -> np.ndarray:
    """Expected calibration error from bin sums (last axis = bins).

    ``ECE = sum_b (n_b / N) |mean_p_b - mean_c_b| = sum_b |sum_p_b - sum_c_b| / N``.

    Args:
        count: Pixels per bin, shape ``(..., n_bins)``.
        sum_p: Sum of predicted probabilities per bin, same shape.
        sum_c: Sum of reference confidence per bin, same shape.

    Returns:
        ECE with the bin axis reduced; NaN where there is no pixel at all.
    """
    count = np.asarray(count, dtype=np.float64)
    total = count.sum(axis=-1)
    gap = np.abs(np.asarray(sum_p, dtype=np.float64) - np.asarray(sum_c, dtype=np.float64))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, gap.sum(axis=-1) / np.where(total > 0, total, 1), np.nan)


def adaptive_ece(p: np.ndarray, c: np.ndarray, n_bins: int = 15) -> np.ndarray:
    """Adaptive (equal-mass) ECE per row: pixels sorted by ``p`` split into ``n_bins`` equal parts.

    Ties in ``p`` are ordered by numpy's default sort (deterministic for a given input; a
    stable sort would cost three times as much and ties only move pixels between neighbouring
    bins of the same mean probability).

    Args:
        p: Predicted probabilities, ``(K, N)`` or ``(N,)``.
        c: Reference confidence, same shape.
        n_bins: Number of bins (bin sizes differ by at most one pixel).

    Returns:
        ``(K,)`` adaptive ECE; NaN for a row with no pixel.
    """
    p2, c2 = _as_2d(p), _as_2d(c)
    k, n = p2.shape
    if n == 0:
        return np.full(k, np.nan)
    order = np.argsort(p2, axis=1)
    ps = np.take_along_axis(p2, order, axis=1)
    cs = np.take_along_axis(c2, order, axis=1)
    edges = (np.arange(n_bins + 1) * n) // n_bins
    zero = np.zeros((k, 1))
    cum_p = np.concatenate([zero, np.cumsum(ps, axis=1)], axis=1)[:, edges]
    cum_c = np.concatenate([zero, np.cumsum(cs, axis=1)], axis=1)[:, edges]
    gap = np.abs(np.diff(cum_p, axis=1) - np.diff(cum_c, axis=1))
    return gap.sum(axis=1) / n


def calibration_stats(p: np.ndarray, c: np.ndarray, n_bins: int = 15) -> dict[str, np.ndarray]:
    """All calibration statistics of one image, every class at once.

    Equal-width bins: bin ``b`` holds ``b / n_bins <= p < (b + 1) / n_bins`` (p = 1 falls in the
    last bin).

    Args:
        p: Predicted probabilities, ``(K, N)``.
        c: Reference confidence, ``(K, N)``.
        n_bins: Number of bins for ECE and adaptive ECE.

    Returns:
        Dict of arrays: ``bin_count``, ``bin_sum_p``, ``bin_sum_c`` (``(K, n_bins)``), and
        ``(K,)`` arrays ``ece``, ``aece``, ``brier``, ``nll`` (NaN if N = 0), ``brier_sum``,
        ``nll_sum`` (sums over pixels, for pooling).
    """
    p2, c2 = _as_2d(p), _as_2d(c)
    k, n = p2.shape
    idx = np.minimum((np.clip(p2, 0.0, 1.0) * n_bins).astype(np.intp), n_bins - 1)
    idx += (np.arange(k) * n_bins)[:, None]
    flat = idx.ravel()
    size = k * n_bins
    count = np.bincount(flat, minlength=size).reshape(k, n_bins).astype(np.float64)
    sum_p = np.bincount(flat, weights=p2.ravel(), minlength=size).reshape(k, n_bins)
    sum_c = np.bincount(flat, weights=c2.ravel(), minlength=size).reshape(k, n_bins)
    diff = p2 - c2
    brier_sum = np.einsum("kn,kn->k", diff, diff)
    pc = np.clip(p2, NLL_EPS, 1.0 - NLL_EPS)
    log_q = np.log1p(-pc)
    # -(c log p + (1 - c) log(1 - p)) = -(log(1 - p) + c (log p - log(1 - p)))
    nll_sum = -(log_q.sum(axis=1) + np.einsum("kn,kn->k", c2, np.log(pc) - log_q))
    denom = n if n > 0 else np.nan
    return {
        "bin_count": count,
        "bin_sum_p": sum_p,
        "bin_sum_c": sum_c,
        "ece": ece_from_bins(count, sum_p, sum_c),
        "aece": adaptive_ece(p2, c2, n_bins),
        "brier": brier_sum / denom,
        "nll": nll_sum / denom,
        "brier_sum": brier_sum,
        "nll_sum": nll_sum,
    }


def reliability_bins(rows: Sequence[dict[str, Any]], cls: str) -> dict[str, list[float]]:
    """Summed reliability bins of one class over per-image rows from ``image_stats``.

    Returns:
        ``{"count", "sum_p", "sum_c"}``: per bin, the pixel count and the sums of predicted
        probability and of confidence; bins of several evaluations add up.

    Raises:
        ValueError: No row of class ``cls``, or rows with different bin counts.
    """
    sel = [r for r in rows if r.get("class") == cls]
    if not sel:
        raise ValueError(f"reliability_curve: no row of class {cls!r}")
    try:
        count = np.sum([r["_bin_count"] for r in sel], axis=0)
        sum_p = np.sum([r["_bin_sum_p"] for r in sel], axis=0)
        sum_c = np.sum([r["_bin_sum_c"] for r in sel], axis=0)
    except ValueError:
        raise ValueError("reliability_curve: rows were computed with different n_bins") from None
    return {"count": count.tolist(), "sum_p": sum_p.tolist(), "sum_c": sum_c.tolist()}


def curve_from_bins(bins: dict[str, Sequence[float]]
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(bin_centers, mean_pred, mean_conf, counts)`` from :func:`reliability_bins` output."""
    count = np.asarray(bins["count"], dtype=np.float64)
    sum_p = np.asarray(bins["sum_p"], dtype=np.float64)
    sum_c = np.asarray(bins["sum_c"], dtype=np.float64)
    centers = (np.arange(count.shape[-1]) + 0.5) / count.shape[-1]
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_p = np.where(count > 0, sum_p / np.where(count > 0, count, 1), np.nan)
        mean_c = np.where(count > 0, sum_c / np.where(count > 0, count, 1), np.nan)
    return centers, mean_p, mean_c, count


def reliability_curve(
    rows: Sequence[dict[str, Any]], cls: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Pooled reliability diagram of one class over per-image rows from ``image_stats``.

    Args:
        rows: Rows from :func:`confseg.metrics.image_stats` (any classes; ``cls`` is selected).
        cls: Class name.

    Returns:
        ``(bin_centers, mean_pred, mean_conf, counts)``; the means are NaN for empty bins.

    Raises:
        ValueError: No row of class ``cls``, or rows with different bin counts.
    """
    return curve_from_bins(reliability_bins(rows, cls))
