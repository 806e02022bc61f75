"""Patient-level bootstrap confidence intervals for per-image metrics.

Frames of one patient (or one clip) are strongly correlated, so resampling frames gives
intervals that are far too narrow. Here a replicate draws *patients* (``group_key``) with
replacement and takes all their rows, duplicates included; the interval is the percentile
interval of the replicate statistics. The point estimate is the statistic on all rows.

Metric names are reduced without a Python loop over replicates: the mean over images is
``sum / count`` of per-patient sums, so with ``W`` the ``(n_boot, n_patients)`` matrix of
how often each patient was drawn, every replicate mean is ``(W @ sums) / (W @ counts)``.
Pooled metrics (``dice_pooled@0.6``, ``ece_pooled`` ...) sum their raw statistics the same
way. NaN values (an undefined HD95) are skipped per metric. With a single patient no
interval is possible: ``lo == hi == point`` and ``n_patients`` says 1.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from confseg.metrics.segmentation import metric_values, pooled_metric, raw_matrix

Stat = str | Callable[[list[dict[str, Any]]], float]

__all__ = ["bootstrap_ci", "summarize_with_ci"]


class _Groups:
    """Row -> patient index, and the resampling counts shared by every metric."""

    def __init__(self, rows: Sequence[dict[str, Any]], group_key: str, n_boot: int, seed: int):
        missing = [i for i, r in enumerate(rows) if group_key not in r]
        if missing:
            raise ValueError(f"row {missing[0]} has no {group_key!r} key to group by")
        names = sorted({r[group_key] for r in rows}, key=str)
        pos = {g: i for i, g in enumerate(names)}
        self.names = names
        self.n = len(names)
        self.index = np.array([pos[r[group_key]] for r in rows], dtype=np.intp)
        rng = np.random.default_rng(seed)
        self.draws = rng.integers(0, self.n, size=(n_boot, self.n)) if self.n else np.zeros(
            (n_boot, 0), dtype=np.intp)
        flat = (self.draws + (np.arange(n_boot) * self.n)[:, None]).ravel()
        self.weights = np.bincount(flat, minlength=n_boot * self.n).reshape(n_boot, self.n)
        self.weights = self.weights.astype(np.float64)

    def sums(self, values: np.ndarray, index: np.ndarray) -> np.ndarray:
        """Per-patient sums of ``values`` (``(n_rows, w)``) -> ``(n_patients, w)``."""
        out = np.zeros((self.n, values.shape[1]))
        np.add.at(out, index, values)
        return out


def _interval(reps: np.ndarray, point: float, n_pat: int, alpha: float) -> tuple[float, float]:
    ok = np.isfinite(reps)
    if n_pat <= 1 or not ok.any() or not math.isfinite(point):
        return point, point
    lo, hi = np.percentile(reps[ok], [100 * alpha / 2, 100 * (1 - alpha / 2)])
    return float(lo), float(hi)


def _mean_stat(values: np.ndarray, index: np.ndarray, groups: _Groups, alpha: float
               ) -> dict[str, float]:
    finite = np.isfinite(values)
    data = np.stack([np.where(finite, values, 0.0), finite.astype(np.float64)], axis=1)
    s = groups.sums(data, index)
    total, count = s.sum(axis=0)
    point = float(total / count) if count > 0 else math.nan
    rep = groups.weights @ s
    with np.errstate(invalid="ignore", divide="ignore"):
        reps = np.where(rep[:, 1] > 0, rep[:, 0] / np.where(rep[:, 1] > 0, rep[:, 1], 1), np.nan)
    n_pat = int(np.count_nonzero(s[:, 1] > 0))
    lo, hi = _interval(reps, point, n_pat, alpha)
    return {"mean": point, "lo": lo, "hi": hi, "n_patients": n_pat, "n": int(count)}


def _pooled_stat(rows: Sequence[dict[str, Any]], name: str, index: np.ndarray,
                 groups: _Groups, alpha: float) -> dict[str, float]:
    pm = pooled_metric(name)
    assert pm is not None
    per_group = [groups.sums(raw_matrix(rows, key), index) for key in pm.keys]
    point = float(pm.reduce([g.sum(axis=0) for g in per_group]))
    reps = np.asarray(pm.reduce([groups.weights @ g for g in per_group]), dtype=np.float64)
    n_pat = int(np.unique(index).size)
    lo, hi = _interval(reps, point, n_pat, alpha)
    return {"mean": point, "lo": lo, "hi": hi, "n_patients": n_pat, "n": len(rows)}


def _named_stat(rows: Sequence[dict[str, Any]], name: str, index: np.ndarray, groups: _Groups,
                alpha: float, exclude_empty_ref: bool) -> dict[str, float]:
    if not rows:
        return {"mean": math.nan, "lo": math.nan, "hi": math.nan, "n_patients": 0, "n": 0}
    if pooled_metric(name) is not None:
        return _pooled_stat(rows, name, index, groups, alpha)
    values = metric_values(rows, name, exclude_empty_ref=exclude_empty_ref)
    return _mean_stat(values, index, groups, alpha)


def bootstrap_ci(
    rows: Sequence[dict[str, Any]], *, group_key: str = "patient", stat: Stat = "dice@any",
    n_boot: int = 1000, alpha: float = 0.05, seed: int = 0,
) -> tuple[float, float, float]:
    """Point estimate and percentile interval, resampling groups (patients), never rows.

    Args:
        rows: Per-image rows (one class when ``stat`` is a metric name), each with ``group_key``.
        group_key: Row key naming the resampling unit.
        stat: A metric name (mean over images, NaN skipped; or a pooled metric such as
            ``dice_pooled@0.6``), or a callable ``rows -> float`` evaluated on each replicate
            (a Python loop: slower, but any statistic).
        n_boot: Number of replicates.
        alpha: 1 - coverage (0.05 -> 95 % interval).
        seed: Seed of the replicate draws (same seed, same draws).

    Returns:
        ``(point, lo, hi)``; ``lo == hi == point`` with a single patient.

    Raises:
        ValueError: A row lacks ``group_key``, or a metric name is used on rows of several classes.
    """
    rows = list(rows)
    groups = _Groups(rows, group_key, n_boot, seed)
    if isinstance(stat, str):
        if len({r.get("class") for r in rows}) > 1:
            raise ValueError(f"bootstrap_ci: rows of several classes; select one before {stat!r}")
        res = _named_stat(rows, stat, groups.index, groups, alpha, False)
        return res["mean"], res["lo"], res["hi"]
    point = float(stat(rows))
    members: list[list[dict[str, Any]]] = [[] for _ in range(groups.n)]
    for r, g in zip(rows, groups.index, strict=True):
        members[g].append(r)
    reps = np.array([float(stat([r for g in draw for r in members[g]])) for draw in groups.draws])
    lo, hi = _interval(reps, point, groups.n, alpha)
    return point, lo, hi


def summarize_with_ci(
    rows: Sequence[dict[str, Any]], metrics: Sequence[str], classes: Sequence[str], *,
    group_key: str = "patient", n_boot: int = 1000, alpha: float = 0.05, seed: int = 0,
    exclude_empty_ref: bool = False,
) -> dict[str, dict[str, dict[str, float]]]:
    """Per class and metric: point estimate and patient-bootstrap interval.

    All classes and metrics share the same replicate draws (paired comparisons stay paired).

    Args:
        rows: Rows of all classes (``class`` key), each with ``group_key``.
        metrics: Metric names (``dice@0.6``, ``hd95``, ``dice_pooled@any`` ...).
        classes: Classes to report.
        group_key: Row key naming the resampling unit.
        n_boot: Number of replicates.
        alpha: 1 - coverage.
        seed: Seed of the replicate draws.
        exclude_empty_ref: Leave images with an empty reference out of ``dice@t``/``iou@t``.

    Returns:
        ``{class: {metric: {"mean", "lo", "hi", "n_patients", "n"}}}`` where ``mean`` is the
        point estimate, ``n_patients`` the patients with a defined value and ``n`` the images.
    """
    rows = list(rows)
    groups = _Groups(rows, group_key, n_boot, seed)
    out: dict[str, dict[str, dict[str, float]]] = {}
    for cls in classes:
        pick = [i for i, r in enumerate(rows) if r.get("class") == cls]
        sel = [rows[i] for i in pick]
        index = groups.index[pick]
        out[cls] = {m: _named_stat(sel, m, index, groups, alpha, exclude_empty_ref)
                    for m in metrics}
    return out
