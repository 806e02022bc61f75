"""Paired comparisons of two methods on the same patients: bootstrap interval and Wilcoxon.

Inputs are per-patient values (average a patient's images, and seeds, before calling), so
the resampling unit is the patient, never the frame.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np


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
        ``{"mean", "lo", "hi", "n_patients", "wilcoxon_p"}`` (``wilcoxon_p`` is NaN when
        every difference is zero or fewer than 2 patients are shared).
    """
    shared = sorted(p for p in a if p in b and np.isfinite(a[p]) and np.isfinite(b[p]))
    if not shared:
        return {"mean": math.nan, "lo": math.nan, "hi": math.nan, "n_patients": 0,
                "wilcoxon_p": math.nan}
    d = np.array([a[p] - b[p] for p in shared], dtype=np.float64)
    rng = np.random.default_rng(seed)
    reps = d[rng.integers(0, len(d), size=(n_boot, len(d)))].mean(axis=1)
    lo, hi = np.quantile(reps, [alpha / 2, 1 - alpha / 2])
    p = math.nan
    if len(d) >= 2 and np.any(d != 0):
        from scipy.stats import wilcoxon

        p = float(wilcoxon(d).pvalue)
    return {"mean": float(d.mean()), "lo": float(lo), "hi": float(hi),
            "n_patients": len(shared), "wilcoxon_p": p}


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
