"""Matplotlib figures for a study report: numbers in, PNG bytes out (small multiples).

Every function takes plain mappings of numbers (what ``results/*.json`` and the cells'
``metrics.csv`` hold) and returns the PNG, so the report can embed it without a file. A
strategy keeps its colour across figures: pass the strategies in the study's order.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import MaxNLocator

#: (mean, lo, hi) per x position.
Band = tuple[Sequence[float], Sequence[float], Sequence[float]]
#: (centers, mean_pred, mean_conf, counts), as from ``curve_from_bins``.
Curve = tuple[Sequence[float], Sequence[float], Sequence[float], Sequence[float]]


def strategy_colours(strategies: Sequence[str]) -> dict[str, str]:
    """One colour per strategy (tab10, cycled), in the given order."""
    cmap = plt.get_cmap("tab10")
    return {s: matplotlib.colors.to_hex(cmap(i % 10)) for i, s in enumerate(strategies)}


def _png(fig: plt.Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def _grid(n: int, *, cols: int, w: float, h: float, sharey: bool = True
          ) -> tuple[plt.Figure, list[plt.Axes]]:
    """``n`` panels in rows of at most ``cols``; unused panels are hidden."""
    cols = max(1, min(cols, n))
    rows = math.ceil(max(n, 1) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(w * cols, h * rows), sharey=sharey,
                             squeeze=False)
    flat = list(axes.ravel())
    for ax in flat[n:]:
        ax.set_visible(False)
    return fig, flat[:n]


def _legend_below(fig: plt.Figure, axes: Sequence[plt.Axes], ncol: int) -> None:
    handles, labels = [], []
    for ax in axes:
        for hnd, lab in zip(*ax.get_legend_handles_labels(), strict=True):
            if lab not in labels:
                handles.append(hnd)
                labels.append(lab)
    if handles:
        fig.legend(handles, labels, loc="lower center", ncol=max(1, min(ncol, len(labels))),
                   bbox_to_anchor=(0.5, 1.0), frameon=False)


def plot_level_curves(levels: Sequence[str], curves: Mapping[str, Mapping[str, Band]], *,
                      colours: Mapping[str, str], ylabel: str = "Dice") -> bytes:
    """Dice against the reference confidence level: one panel per class, one line per strategy.

    Args:
        levels: X tick labels in order (e.g. ``any``, ``≥20%``, ...).
        curves: Class -> strategy -> (mean, lo, hi), one value per level (NaN for none).
        colours: Strategy -> colour.
        ylabel: Y axis label.
    """
    x = np.arange(len(levels))
    fig, axes = _grid(len(curves), cols=3, w=3.8, h=3.0)
    for ax, (cls, by_strategy) in zip(axes, curves.items(), strict=True):
        for s, (mean, lo, hi) in by_strategy.items():
            c = colours.get(s)
            ax.plot(x, np.asarray(mean, float), marker="o", ms=3, color=c, label=s)
            ax.fill_between(x, np.asarray(lo, float), np.asarray(hi, float), color=c,
                            alpha=0.15, lw=0)
        ax.set_title(cls)
        ax.set_xticks(x, list(levels), fontsize=8, rotation=45, ha="right",
                      rotation_mode="anchor")
        ax.set_xlabel("reference: confidence level")
        ax.grid(alpha=0.3)
    if axes:
        axes[0].set_ylabel(ylabel)
    _legend_below(fig, axes, ncol=5)
    return _png(fig)


def plot_forest(panels: Mapping[str, Mapping[str, Sequence[float]]], *, xlabel: str,
                colours: Mapping[str, str]) -> bytes:
    """Forest plot of paired differences: one panel per class, a point and interval per row.

    Args:
        panels: Class -> strategy -> (mean, lo, hi) of the difference to the reference.
        xlabel: X axis label (keep it short: ``− threshold:0``).
        colours: Strategy -> colour.
    """
    names = list(dict.fromkeys(s for rows in panels.values() for s in rows))
    y = dict(zip(names, range(len(names) - 1, -1, -1), strict=True))
    fig, axes = _grid(len(panels), cols=3, w=3.6, h=0.4 * len(names) + 1.0)
    for ax, (cls, rows) in zip(axes, panels.items(), strict=True):
        for s, (mean, lo, hi) in rows.items():
            c = colours.get(s, "C0")
            ax.plot([float(lo), float(hi)], [y[s], y[s]], color=c, lw=2)
            ax.plot([float(mean)], [y[s]], "o", color=c, ms=6)
        ax.axvline(0, color="grey", lw=1, ls="--")
        ax.set_yticks(list(y.values()), list(y), fontsize=8)
        ax.set_ylim(-0.7, len(names) - 0.3)
        ax.set_title(cls)
        ax.grid(alpha=0.3, axis="x")
        ax.ticklabel_format(axis="x", style="sci", scilimits=(-3, 4))
        ax.tick_params(axis="x", labelsize=8)
        ax.xaxis.set_major_locator(MaxNLocator(nbins=4))
        ax.set_xlabel(xlabel, fontsize=8)
    return _png(fig)


def plot_reliability_grid(curves: Mapping[str, Mapping[str, Curve]], *,
                          colours: Mapping[str, str]) -> bytes:
    """Reliability diagrams overlaid per class: one panel per class, one line per strategy.

    Args:
        curves: Class -> strategy -> (centers, mean_pred, mean_conf, counts).
        colours: Strategy -> colour.
    """
    fig, axes = _grid(len(curves), cols=3, w=3.4, h=3.4)
    for ax, (cls, by_strategy) in zip(axes, curves.items(), strict=True):
        ax.plot([0, 1], [0, 1], "--", color="grey", lw=1, label="perfect")
        for s, (_, mean_p, mean_c, counts) in by_strategy.items():
            ok = np.asarray(counts, float) > 0
            ax.plot(np.asarray(mean_p, float)[ok], np.asarray(mean_c, float)[ok], marker="o",
                    ms=3, color=colours.get(s), label=s)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_aspect("equal")
        ax.set_title(cls)
        ax.set_xlabel("predicted probability")
        ax.grid(alpha=0.3)
    if axes:
        axes[0].set_ylabel("mean annotator confidence")
    _legend_below(fig, axes, ncol=6)
    return _png(fig)


def plot_training_grid(curves: Mapping[str, Mapping[str, Mapping[str, Mapping[int, float]]]]
                       ) -> bytes:
    """Training curves of every cell: one panel per strategy, one line per fold and seed.

    The top row shows the loss (train solid, validation dashed); a second row shows the
    validation Dice when any cell logged it.

    Args:
        curves: Strategy -> cell label (``fold 0 seed 0``) -> column -> epoch -> value, the
            columns as in ``metrics.csv`` (``train/loss``, ``val/loss``, ``val/dice``).
    """
    n = len(curves)
    has_val = any("val/dice" in cols for cells in curves.values() for cols in cells.values())
    cols = min(max(n, 1), 4)
    n_rows = math.ceil(max(n, 1) / cols)
    per = 2 if has_val else 1
    fig, axes = plt.subplots(n_rows * per, cols, figsize=(3.4 * cols, 2.5 * n_rows * per),
                             squeeze=False)
    for ax in axes.ravel():
        ax.set_visible(False)
    cmap = plt.get_cmap("tab10")
    for i, (strategy, cells) in enumerate(curves.items()):
        r, c = divmod(i, cols)
        ax = axes[r * per, c]
        ax.set_visible(True)
        ax.set_title(strategy, fontsize=10)
        axv = axes[r * per + 1, c] if has_val else None
        for j, (label, m) in enumerate(cells.items()):
            colour = cmap(j % 10)
            for key, ls in (("train/loss", "-"), ("val/loss", "--")):
                if key in m:
                    ep = sorted(m[key])
                    ax.plot(ep, [m[key][e] for e in ep], ls, marker=".", color=colour,
                            label=label if key == "train/loss" else None)
            if axv is not None and "val/dice" in m:
                ep = sorted(m["val/dice"])
                axv.plot(ep, [m["val/dice"][e] for e in ep], marker=".", color=colour)
        ax.set_ylabel("loss" if c == 0 else "")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        if axv is not None:
            axv.set_visible(True)
            if not axv.lines:
                axv.text(0.5, 0.5, "no validation", ha="center", va="center",
                         transform=axv.transAxes, color="grey")
            axv.set_ylim(0, 1)
            axv.set_xlabel("epoch")
            axv.xaxis.set_major_locator(MaxNLocator(integer=True))
            axv.set_ylabel("val Dice @0.5" if c == 0 else "")
            axv.grid(alpha=0.3)
        else:
            ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.tight_layout()
    return _png(fig)
