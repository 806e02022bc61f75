"""Matplotlib figures for run folders: training progress and reliability diagrams."""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from confseg.io.atomic import atomic_path


def _save(fig: plt.Figure, out: str | os.PathLike[str]) -> None:
    with atomic_path(out, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)


def read_epoch_metrics(metrics_csv: str | os.PathLike[str]) -> dict[str, dict[int, float]]:
    """Per-epoch values from a Lightning ``metrics.csv``: metric -> epoch -> value."""
    out: dict[str, dict[int, float]] = {}
    p = Path(metrics_csv)
    if not p.exists():
        return out
    with p.open(newline="") as f:
        for row in csv.DictReader(f):
            if not row.get("epoch"):
                continue
            ep = int(float(row["epoch"]))
            for k, v in row.items():
                if k in ("epoch", "step") or v in ("", None):
                    continue
                out.setdefault(k, {})[ep] = float(v)
    return out


def plot_progress(metrics_csv: str | os.PathLike[str], out_png: str | os.PathLike[str]) -> None:
    """Loss and Dice curves per epoch (train and validation)."""
    m = read_epoch_metrics(metrics_csv)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.4))
    for key, label in (("train/loss", "train loss"), ("val/loss", "val loss")):
        if key in m:
            ep = sorted(m[key])
            ax1.plot(ep, [m[key][e] for e in ep], marker="o", ms=3, label=label)
    ax1.set_xlabel("epoch")
    ax1.set_ylabel("BCE + Dice loss")
    if ax1.lines:
        ax1.legend()
    ax1.grid(alpha=0.3)
    for key, label in (("val/dice", "val Dice @0.5"), ("val/soft_dice", "val soft Dice")):
        if key in m:
            ep = sorted(m[key])
            ax2.plot(ep, [m[key][e] for e in ep], marker="o", ms=3, label=label)
    ax2.set_xlabel("epoch")
    ax2.set_ylabel("Dice (vs strategy target)")
    ax2.set_ylim(0, 1)
    if ax2.lines:
        ax2.legend()
    else:  # --val none: no validation curves
        ax2.text(0.5, 0.5, "no validation patients\n(--val none)", ha="center", va="center",
                 transform=ax2.transAxes, color="grey")
    ax2.grid(alpha=0.3)
    fig.suptitle(Path(metrics_csv).parent.name)
    _save(fig, out_png)


def plot_reliability(centers: Sequence[float], mean_pred: Sequence[float],
                     mean_conf: Sequence[float], counts: Sequence[float], *, title: str,
                     out_png: str | os.PathLike[str]) -> None:
    """Reliability diagram: mean annotator confidence against mean predicted probability."""
    c = np.asarray(counts, dtype=float)
    ok = c > 0
    fig, (ax, axh) = plt.subplots(2, 1, figsize=(4.2, 5), sharex=True,
                                  gridspec_kw={"height_ratios": [3, 1]})
    ax.plot([0, 1], [0, 1], "--", color="grey", lw=1, label="perfect")
    ax.plot(np.asarray(mean_pred)[ok], np.asarray(mean_conf)[ok], marker="o", label="model")
    ax.set_ylabel("mean reference confidence")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.legend(loc="upper left")
    ax.grid(alpha=0.3)
    ax.set_title(title)
    width = 1.0 / max(len(c), 1)
    axh.bar(np.asarray(centers), np.where(ok, c, 0), width=width * 0.9)
    axh.set_yscale("log")
    axh.set_xlabel("predicted probability")
    axh.set_ylabel("pixels")
    _save(fig, out_png)
