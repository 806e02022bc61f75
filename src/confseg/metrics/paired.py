"""Paired comparisons of methods on the same patients: bootstrap intervals, Wilcoxon, Holm.

Inputs are per-patient values (average a patient's images, and seeds, before calling), so
the resampling unit is the patient, never the frame. Every interval here draws patients from
one matrix of draws per patient list (:func:`patient_draws`), so intervals of different
strategies on the same patients share their draws.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

__all__ = ["holm", "mean_interval", "paired_difference", "patient_draws", "per_patient_means",
           "rank_biserial"]


def patient_draws(n_patients: int, *, n_boot: int = 1000, seed: int = 0) -> np.ndarray:
    """``(n_boot, n_patients)`` patient indices drawn with replacement (same seed, same draws)."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, max(n_patients, 1), size=(n_boot, n_patients))


def mean_interval(values: Mapping[str, float], *, n_boot: int = 1000, alpha: float = 0.05,
                  seed: int = 0) -> dict[str, float]:
    """Mean over patients with a patient-bootstrap percentile interval.

    Args:
        values: Patient -> value (NaNs are left out).
        n_boot: Bootstrap replicates.
        alpha: 1 - coverage.
        seed: Seed of the draws (shared with :func:`paired_difference` for the same patients).

    Returns:
        ``{"mean", "lo", "hi", "n_patients"}``; with one patient ``lo == hi == mean``.
    """
    pats = sorted(p for p, v in values.items() if np.isfinite(v))
    if not pats:
        return {"mean": math.nan, "lo": math.nan, "hi": math.nan, "n_patients": 0}
    x = np.array([values[p] for p in pats], dtype=np.float64)
    if len(x) == 1:
        return {"mean": float(x[0]), "lo": float(x[0]), "hi": float(x[0]), "n_patients": 1}
    reps = x[patient_draws(len(x), n_boot=n_boot, seed=seed)].mean(axis=1)
    lo, hi = np.quantile(reps, [alpha / 2, 1 - alpha / 2])
    return {"mean": float(x.mean()), "lo": float(lo), "hi": float(hi), "n_patients": len(x)}


def rank_biserial(d: Sequence[float] | np.ndarray) -> float:
    """Matched-pairs rank-biserial correlation of differences ``d`` (Wilcoxon's effect size).

    ``(R+ - R-) / (R+ + R-)`` over the ranks of ``|d|`` (zeros dropped, ties averaged): +1
    when every difference is positive, -1 when every one is negative, 0 when balanced; NaN
    when every difference is zero.
    """
    from scipy.stats import rankdata

    x = np.asarray(d, dtype=np.float64)
    x = x[np.isfinite(x) & (x != 0)]
    if not len(x):
        return math.nan
    r = rankdata(np.abs(x))
    pos, neg = r[x > 0].sum(), r[x < 0].sum()
    return float((pos - neg) / (pos + neg))


def paired_difference(a: Mapping[str, float], b: Mapping[str, float], *, n_boot: int = 1000,
                      alpha: float = 0.05, seed: int = 0) -> dict[str, float]:
    """Mean of ``a - b`` over the patients both have, with a patient-bootstrap interval.

    Args:
        a: Patient -> value of method A.
        b: Patient -> value of method B.
        n_boot: Bootstrap replicates (patients drawn with replacement).
        alpha: 1 - coverage of the percentile interval.
        seed: Seed of the draws.

    Returns:
        ``{"mean", "lo", "hi", "n_patients", "wilcoxon_p", "effect_size"}``: ``wilcoxon_p``
        is the two-sided signed-rank p-value (1 when every difference is zero, NaN with fewer
        than 2 shared patients); ``effect_size`` is :func:`rank_biserial`.
    """
    shared = sorted(p for p in a if p in b and np.isfinite(a[p]) and np.isfinite(b[p]))
    if not shared:
        return {"mean": math.nan, "lo": math.nan, "hi": math.nan, "n_patients": 0,
                "wilcoxon_p": math.nan, "effect_size": math.nan}
    d = np.array([a[p] - b[p] for p in shared], dtype=np.float64)
    reps = d[patient_draws(len(d), n_boot=n_boot, seed=seed)].mean(axis=1)
    lo, hi = np.quantile(reps, [alpha / 2, 1 - alpha / 2]) if len(d) > 1 else (d[0], d[0])
    p = math.nan
    if len(d) >= 2:
        if np.all(d == 0):
            p = 1.0
        else:
            from scipy.stats import wilcoxon

            p = float(wilcoxon(d).pvalue)
    return {"mean": float(d.mean()), "lo": float(lo), "hi": float(hi),
            "n_patients": len(shared), "wilcoxon_p": p, "effect_size": rank_biserial(d)}


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values, in the input order (NaNs stay NaN, not counted)."""
    p = np.asarray(pvalues, dtype=np.float64)
    ok = np.flatnonzero(np.isfinite(p))
    out = np.full(len(p), math.nan)
    m = len(ok)
    order = ok[np.argsort(p[ok], kind="stable")]
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        out[i] = running
    return [float(v) for v in out]


def per_patient_means(rows: list[dict], metric: str, *, cls: str | None = None,
                      group_key: str = "patient") -> dict[str, float]:
    """Per-patient mean of ``metric`` over rows (optionally of one class), NaNs left out."""
    acc: dict[str, list[float]] = {}
    for r in rows:
        if cls is not None and r.get("class") != cls:
            continue
        v = r.get(metric)
        if isinstance(v, int | float) and math.isfinite(v):
            acc.setdefault(str(r[group_key]), []).append(float(v))
    return {p: float(np.mean(v)) for p, v in acc.items()}
