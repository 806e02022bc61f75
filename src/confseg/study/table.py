"""The study summary as a rich table and plain sentences (``confseg study summary``, the demo)."""

from __future__ import annotations

import math
from typing import Any

from rich.table import Table

from confseg.metrics.segmentation import HEADLINE


def label(metric: str) -> str:
    """Short name of a metric for a terminal column (``dice@0.6`` -> ``Dice ≥60%``)."""
    if metric == "dice@any":
        return "Dice any mark"
    if metric.startswith("dice@"):
        return f"Dice ≥{float(metric.split('@', 1)[1]) * 100:.0f}%"
    return HEADLINE.get(metric, metric)


def _cell(m: dict[str, Any] | None) -> str:
    if not m or not math.isfinite(m.get("mean", math.nan)):
        return "-"
    return f"{m['mean']:.3f} [{m['lo']:.3f}, {m['hi']:.3f}]"


def table_metrics(summary: dict[str, Any]) -> list[str]:
    """The metrics a terminal table shows: truth and reference Dice, QUBIQ, ECE."""
    return [m for m in summary["metrics"]
            if m == "dice_truth" or m.startswith("dice@") or m in ("qubiq", "ece")]


def summary_table(summary: dict[str, Any], paired: dict[str, Any], *, cls: str,
                  metric: str | None = None, reference: str | None = None,
                  metrics: list[str] | None = None) -> Table:
    """Strategies x metrics (mean [95 % interval]) for one class, best marked with ``*``.

    With a ``reference`` strategy, a last column gives each strategy's paired difference
    against it on ``metric`` (default: the first headline metric) with its Holm-adjusted
    Wilcoxon p-value. ``metrics`` defaults to :func:`table_metrics`.
    """
    metrics = metrics or table_metrics(summary)
    metric = metric or summary["metrics"][0]
    best = summary["best"].get(cls, {})
    t = Table(title=f"{cls}: mean [95% patient-bootstrap interval], "
                    f"{summary['finished_cells']}/{summary['n_cells']} cells, "
                    f"{summary['n_patients']} patients", title_justify="left")
    t.add_column("strategy", no_wrap=True, min_width=len(max(summary["strategies"], key=len)))
    for m in metrics:
        t.add_column(label(m) + (" ↓" if m in summary["lower_is_better"] else ""),
                     justify="right")
    comp = (paired.get("comparisons", {}).get(reference) if reference else None)
    if comp is not None:
        t.add_column(f"Δ {label(metric)} vs {reference}, p (Holm)", justify="right")
    for s in summary["strategies"]:
        row = [s]
        for m in metrics:
            text = _cell(summary["table"][s][cls].get(m))
            row.append(f"[bold]{text} *[/bold]" if best.get(m, {}).get("strategy") == s
                       else text)
        if comp is not None:
            d = comp.get(s, {}).get(cls, {}).get(metric)
            row.append("reference" if s == reference else (
                "-" if not d or not math.isfinite(d["mean"]) else
                f"{d['mean']:+.3f} [{d['lo']:+.3f}, {d['hi']:+.3f}] p={d['p_holm']:.2g}"
                if math.isfinite(d.get("p_holm", math.nan)) else
                f"{d['mean']:+.3f} [{d['lo']:+.3f}, {d['hi']:+.3f}]"))
        t.add_row(*row)
    return t


def summary_sentences(summary: dict[str, Any], *, cls: str, metrics: list[str] | None = None
                      ) -> list[str]:
    """One plain sentence per metric: the best strategy, or that it ties the runner-up."""
    best = summary["best"].get(cls, {})
    return [best[m]["sentence"] for m in (metrics or table_metrics(summary)) if m in best]


def missing_lines(summary: dict[str, Any]) -> list[str]:
    """One line per cell that is not in the results (its status and error)."""
    return [f"{m['cell']}: {m['status']}" + (f" ({m['error']})" if m.get("error") else "")
            for m in summary.get("missing", [])]
