"""Matplotlib figures for a downstream report: arrays and mappings in, PNG bytes out.

Every function takes plain numbers (what ``tasks/<task>/summary.json`` and
``predictions.csv`` hold) and returns the PNG, so the report can embed it without a file. A
source keeps its colour across figures and tasks: build the colours once with
:func:`source_colours` from every source in order. Baselines (the raw-image model and the
annotation oracle) are grey and hatched or dashed, so they never pass for a segmenter.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import MaxNLocator

from confseg.viz.study_plots import _grid, _png

#: (mean, lo, hi).
Interval = tuple[float, float, float]

_BASELINE_GREYS = ("#9a9a9a", "#5a5a5a", "#c4c4c4")
_HATCHES = ("//", "xx", "..")


def source_colours(sources: Sequence[str], baselines: Sequence[str] = ()) -> dict[str, str]:
    """One colour per source: greys for ``baselines``, tab10 (without its grey) for the rest.

    Args:
        sources: Every source, in the order colours are handed out.
        baselines: The sources drawn as baselines (in order: raw, then annotation).
    """
    cmap = plt.get_cmap("tab10")
    palette = [matplotlib.colors.to_hex(cmap(i)) for i in range(10) if i != 7]
    out: dict[str, str] = {}
    k = 0
    for s in sources:
        if s in baselines:
            out[s] = _BASELINE_GREYS[list(baselines).index(s) % len(_BASELINE_GREYS)]
        else:
            out[s] = palette[k % len(palette)]
            k += 1
    return out


def _hatch(source: str, baselines: Sequence[str]) -> str | None:
    return _HATCHES[list(baselines).index(source) % len(_HATCHES)] if source in baselines else None


def _f(v: float | None) -> float:
    return float(v) if v is not None else math.nan


def plot_headline(values: Mapping[str, Interval], *, metric: str, colours: Mapping[str, str],
                  baselines: Sequence[str] = (), lower_is_better: bool = False) -> bytes:
    """Horizontal bars of one metric per source with their intervals as error bars.

    Args:
        values: Source -> (mean, lo, hi); a NaN mean is drawn as "n/a".
        metric: The metric's name (the x label).
        colours: Source -> colour.
        baselines: Sources drawn hatched (raw, annotation).
        lower_is_better: Written in the x label.
    """
    names = list(values)
    fig, ax = plt.subplots(figsize=(4.2, 0.42 * len(names) + 1.1))
    y = np.arange(len(names))[::-1]
    for yi, s in zip(y, names, strict=True):
        mean, lo, hi = (_f(v) for v in values[s])
        if not math.isfinite(mean):
            ax.text(0, yi, " n/a", va="center", fontsize=8, color="grey")
            continue
        err = [[max(0.0, mean - lo) if math.isfinite(lo) else 0.0],
               [max(0.0, hi - mean) if math.isfinite(hi) else 0.0]]
        ax.barh(yi, mean, height=0.6, color=colours.get(s, "C0"), edgecolor="white",
                hatch=_hatch(s, baselines), xerr=err, capsize=3,
                error_kw={"elinewidth": 1.2, "ecolor": "#222"})
        ax.plot([mean], [yi], "o", color="#222", ms=3.5)
    ax.set_yticks(y, names, fontsize=9)
    ax.set_ylim(-0.6, len(names) - 0.4)
    ax.axvline(0, color="#444", lw=0.8)
    ax.set_xlabel(f"{metric} ({'lower' if lower_is_better else 'higher'} is better)")
    ax.grid(alpha=0.3, axis="x")
    ax.xaxis.set_major_locator(MaxNLocator(nbins=6))
    return _png(fig)


def plot_paired(panels: Mapping[str, Mapping[str, Interval]],
                per_split: Mapping[str, Mapping[str, Interval]] | None = None, *, metric: str,
                colours: Mapping[str, str], order: Sequence[str] = ()) -> bytes:
    """Forest plot of paired differences: one panel per reference, a row per source.

    Args:
        panels: Reference -> source -> (mean, lo, hi) of ``source - reference`` (patient
            bootstrap; thick line).
        per_split: The same over the outer splits (thin line just below), when given.
        metric: The metric's name (in the x label).
        colours: Source -> colour.
        order: Sources top to bottom (default: first seen); others follow.
    """
    seen = [s for rows in panels.values() for s in rows]
    names = list(dict.fromkeys([*(s for s in order if s in seen), *seen]))
    n_rows = max((len(rows) for rows in panels.values()), default=1)
    fig, axes = _grid(len(panels), cols=3, w=3.6, h=0.45 * n_rows + 1.1, sharey=False)
    for ax, (ref, rows) in zip(axes, panels.items(), strict=True):
        split_rows = (per_split or {}).get(ref) or {}
        shown = [s for s in names if s in rows]
        pos = {s: len(shown) - 1 - i for i, s in enumerate(shown)}
        for s in shown:
            mean, lo, hi = rows[s]
            c = colours.get(s, "C0")
            ax.plot([_f(lo), _f(hi)], [pos[s], pos[s]], color=c, lw=2.5, solid_capstyle="butt")
            ax.plot([_f(mean)], [pos[s]], "o", color=c, ms=6)
            if s in split_rows:
                m2, lo2, hi2 = (_f(v) for v in split_rows[s])
                ax.plot([lo2, hi2], [pos[s] - 0.25] * 2, color=c, lw=1, alpha=0.7)
                ax.plot([m2], [pos[s] - 0.25], "|", color=c, ms=6)
        ax.axvline(0, color="grey", lw=1, ls="--")
        ax.set_yticks(list(pos.values()), list(pos), fontsize=8)
        ax.set_ylim(-0.7, n_rows - 0.3)
        ax.set_title(f"vs {ref}", fontsize=10)
        ax.grid(alpha=0.3, axis="x")
        ax.tick_params(axis="x", labelsize=8)
        ax.xaxis.set_major_locator(MaxNLocator(nbins=4))
        ax.set_xlabel(f"Δ {metric}", fontsize=8)
    fig.tight_layout()
    return _png(fig)


def plot_scatter(y: Sequence[float], preds: Mapping[str, Sequence[float]], *,
                 colours: Mapping[str, str], baselines: Collection[str] = (),
                 label: str = "value") -> bytes:
    """Predicted against true values: one panel per source, the identity line dashed.

    Args:
        y: True values.
        preds: Source -> predictions, aligned with ``y``.
        colours: Source -> colour.
        baselines: Sources drawn with hollow markers.
        label: What the values are (axis labels).
    """
    yt = np.asarray(y, dtype=np.float64)
    allv = np.concatenate([yt, *(np.asarray(p, dtype=np.float64) for p in preds.values())])
    allv = allv[np.isfinite(allv)]
    lo, hi = (float(allv.min()), float(allv.max())) if len(allv) else (0.0, 1.0)
    pad = 0.05 * (hi - lo or 1.0)
    lim = (lo - pad, hi + pad)
    fig, axes = _grid(len(preds), cols=4, w=2.9, h=2.9)
    for ax, (s, p) in zip(axes, preds.items(), strict=True):
        c = colours.get(s, "C0")
        pv = np.asarray(p, dtype=np.float64)
        ax.plot(lim, lim, "--", color="grey", lw=1)
        kw = ({"facecolors": "none", "edgecolors": c} if s in baselines else
              {"color": c, "edgecolors": "none"})
        ax.scatter(yt, pv, s=14, alpha=0.8, **kw)
        ax.set_xlim(lim)
        ax.set_ylim(lim)
        ax.set_aspect("equal")
        ax.set_title(s, fontsize=10, color=c)
        ax.set_xlabel(f"true {label}", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.xaxis.set_major_locator(MaxNLocator(nbins=4))
        ax.yaxis.set_major_locator(MaxNLocator(nbins=4))
        ax.grid(alpha=0.3)
    if axes:
        axes[0].set_ylabel(f"predicted {label}", fontsize=8)
    fig.tight_layout()
    return _png(fig)


def roc_points(y: Sequence[float], score: Sequence[float]
               ) -> tuple[np.ndarray, np.ndarray, float] | None:
    """False- and true-positive rates of every threshold, and the area under them.

    Args:
        y: Labels (1 positive, anything else negative).
        score: Scores, higher meaning positive; non-finite ones are dropped.

    Returns:
        ``(fpr, tpr, auc)``, or None without both a positive and a negative.
    """
    s = np.asarray(score, dtype=np.float64)
    pos = np.asarray(y, dtype=np.float64) == 1
    ok = np.isfinite(s)
    s, pos = s[ok], pos[ok]
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if not n_pos or not n_neg:
        return None
    order = np.argsort(-s, kind="mergesort")
    s, pos = s[order], pos[order]
    last = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]  # the last row of each tied score
    tpr = np.r_[0.0, np.cumsum(pos)[last] / n_pos]
    fpr = np.r_[0.0, np.cumsum(~pos)[last] / n_neg]
    return fpr, tpr, float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))


def plot_roc(y: Sequence[float], scores: Mapping[str, Sequence[float]], *,
             colours: Mapping[str, str], baselines: Collection[str] = ()) -> bytes:
    """ROC curves of every source in one panel (baselines dashed), AUC in the legend.

    Args:
        y: Labels (1 positive).
        scores: Source -> probability of the positive class, aligned with ``y``.
        colours: Source -> colour.
        baselines: Sources drawn dashed.
    """
    fig, ax = plt.subplots(figsize=(4.6, 4.2))
    ax.plot([0, 1], [0, 1], ":", color="grey", lw=1, label="chance")
    for s, p in scores.items():
        roc = roc_points(y, p)
        if roc is None:
            continue
        fpr, tpr, auc = roc
        ax.plot(fpr, tpr, "--" if s in baselines else "-", color=colours.get(s, "C0"), lw=1.8,
                drawstyle="default", label=f"{s} (AUC {auc:.2f})")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.set_aspect("equal")
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    return _png(fig)


def plot_confusion(y: Sequence[float], preds: Mapping[str, Sequence[float]], *,
                   labels: Sequence[float], names: Sequence[str],
                   colours: Mapping[str, str] | None = None) -> bytes:
    """Confusion matrices (counts; shade: share of the true class) one panel per source.

    Args:
        y: True classes.
        preds: Source -> predicted classes, aligned with ``y``.
        labels: The class values, in display order.
        names: The display name of each label.
        colours: Source -> colour (of the panel title).
    """
    yt = np.asarray(y, dtype=np.float64)
    lab = np.asarray(labels, dtype=np.float64)
    k = len(lab)
    fig, axes = _grid(len(preds), cols=4, w=2.5 + 0.25 * k, h=2.5 + 0.25 * k, sharey=False)
    for i, (ax, (s, p)) in enumerate(zip(axes, preds.items(), strict=True)):
        pv = np.asarray(p, dtype=np.float64)
        cm = np.array([[int(np.sum((yt == a) & (pv == b))) for b in lab] for a in lab])
        share = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
        ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
        for r in range(k):
            for c in range(k):
                ax.text(c, r, str(cm[r, c]), ha="center", va="center", fontsize=9,
                        color="white" if share[r, c] > 0.6 else "#222")
        ax.set_xticks(range(k), list(names), fontsize=8)
        ax.set_yticks(range(k), list(names) if i % 4 == 0 else [""] * k, fontsize=8)
        ax.set_xlabel("predicted", fontsize=8)
        if i % 4 == 0:
            ax.set_ylabel("true", fontsize=8)
        ax.set_title(s, fontsize=10, color=(colours or {}).get(s, "#333"))
    fig.tight_layout()
    return _png(fig)
