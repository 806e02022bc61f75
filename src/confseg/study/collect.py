"""Collect a study: every finished cell's test rows, per-strategy intervals, paired statistics.

Writes ``results/per_case.csv`` (every cell's rows, long format), ``results/summary.json``
(per strategy, class and metric: mean and 95 % patient-bootstrap interval; the Dice-vs-level
curves; the best strategy per metric and whether it is distinguishable from the runner-up),
``results/paired.json`` (differences against the reference strategies: shared-draw patient
bootstrap, Wilcoxon signed-rank with the rank-biserial effect size, Holm across strategies),
``results/reliability.json`` and ``results/examples/``.

Seeds are not independent samples: a patient's value is the mean over seeds of the mean over
that patient's images, and only patients are resampled.
"""

from __future__ import annotations

import csv
import io
import math
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from confseg.data import load_dataset
from confseg.io.atomic import atomic_write_text
from confseg.io.images import write_png
from confseg.metrics.paired import holm, mean_interval, paired_difference
from confseg.metrics.segmentation import LEVELS
from confseg.preprocess import to_display
from confseg.runs import FINISHED, StudyFolder
from confseg.study.spec import Cell, StudySpec, reference_metric
from confseg.study.table import label
from confseg.viz.overlay import overlay_confidence

#: Metrics where lower is better.
LOWER_IS_BETTER = ("ece", "aece", "brier", "nll", "hd95")
#: Headline metrics besides the reference-level Dice (kept when the rows have them).
OTHER_METRICS = ("qubiq", "soft_dice", "ece", "brier", "hd95")


def headline_metrics(spec: StudySpec, rows: Sequence[dict[str, Any]]) -> list[str]:
    """The metrics a study reports: truth Dice (synthetic data) or QUBIQ, reference Dice, rest."""
    have = set(rows[0]) if rows else set()
    # the headline comes first: the truth where there is one, else the QUBIQ score (Dice
    # averaged over confidence levels), then the Dice against each reference level
    names = ["dice_truth"] if "dice_truth" in have else ["qubiq"]
    names += [reference_metric(r) for r in spec.references]
    names += [m for m in OTHER_METRICS if m in have]
    return [m for m in dict.fromkeys(names) if m in have]


def patient_values(rows: Sequence[dict[str, Any]], metric: str, cls: str) -> dict[str, float]:
    """Patient -> mean over seeds of the mean over the patient's images (NaNs left out)."""
    acc: dict[tuple[str, int], list[float]] = {}
    for r in rows:
        v = r.get(metric)
        if r.get("class") == cls and isinstance(v, float) and math.isfinite(v):
            acc.setdefault((str(r["patient"]), int(r["seed"])), []).append(v)
    per_seed: dict[str, list[float]] = {}
    for (patient, _), vs in acc.items():
        per_seed.setdefault(patient, []).append(float(np.mean(vs)))
    return {p: float(np.mean(vs)) for p, vs in per_seed.items()}


def _sentence(cls: str, metric: str, best: str, runner: str | None,
              diff: dict[str, float] | None) -> tuple[bool, str]:
    metric = label(metric)
    if runner is None or diff is None or not math.isfinite(diff.get("lo", math.nan)):
        return False, f"{best} is the only strategy with {metric} results for {cls}."
    if diff["lo"] > 0 or diff["hi"] < 0:
        return True, (f"{best} is best on {metric} for {cls}, ahead of {runner} by "
                      f"{abs(diff['mean']):.3f} [{diff['lo']:+.3f}, {diff['hi']:+.3f}].")
    return False, (f"{best} and {runner} are not distinguishable on {metric} for {cls} on this "
                   f"data (difference {diff['mean']:+.3f}, 95% interval [{diff['lo']:+.3f}, "
                   f"{diff['hi']:+.3f}] includes 0).")


def _per_case_csv(rows: Sequence[dict[str, Any]]) -> str:
    cols: list[str] = []
    for r in rows:
        cols += [k for k in r if k not in cols]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})
    return buf.getvalue()


def collect(folder: StudyFolder, spec: StudySpec, *, examples: int = 4) -> dict[str, Any]:
    """Gather the finished cells into ``results/``; returns the summary dict.

    Args:
        folder: The study folder.
        spec: Its spec.
        examples: Images drawn in ``results/examples/`` (half the worst, half typical).
    """
    rows: list[dict[str, Any]] = []
    missing: list[dict[str, Any]] = []
    seconds: dict[str, float] = {}
    done: list[Cell] = []
    for cell in spec.cells():
        run = folder.cell(cell.slug, cell.fold, cell.seed)
        st = run.read_status()
        if st.get("status") != FINISHED or not run.per_case_path().is_file():
            missing.append({"cell": cell.key, "status": st.get("status", "pending"),
                            **({"error": st["error"]} if st.get("error") else {})})
            continue
        done.append(cell)
        seconds[cell.strategy] = seconds.get(cell.strategy, 0.0) + float(
            st.get("cell_seconds") or st.get("fit_seconds") or 0.0)
        for r in run.per_case_rows():
            rows.append({"strategy": cell.strategy, "fold": cell.fold, "seed": cell.seed, **r})
    folder.results_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(folder.per_case_path, _per_case_csv(rows))
    classes = sorted({r["class"] for r in rows}, key=[*_dataset_classes(spec)].index) if rows \
        else []
    metrics = headline_metrics(spec, rows)
    strategies = [s for s in spec.strategies if any(r["strategy"] == s for r in rows)]
    by_strategy = {s: [r for r in rows if r["strategy"] == s] for s in strategies}
    values = {s: {c: {m: patient_values(by_strategy[s], m, c) for m in metrics}
                  for c in classes} for s in strategies}
    table = {s: {c: {m: mean_interval(values[s][c][m], n_boot=spec.n_boot) for m in metrics}
                 for c in classes} for s in strategies}
    level_names = [f"dice@{n}" for n, _ in LEVELS if rows and f"dice@{n}" in rows[0]]
    levels = {s: {c: {m.split("@", 1)[1]: mean_interval(patient_values(by_strategy[s], m, c),
                                                        n_boot=spec.n_boot)
                      for m in level_names} for c in classes} for s in strategies}
    paired = _paired(spec, strategies, classes, metrics, values)
    best = _best(strategies, classes, metrics, values, table, spec.n_boot)
    summary = {
        "study": str(folder.root), "collected": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "strategies": strategies, "classes": classes, "metrics": metrics,
        "lower_is_better": [m for m in metrics if m in LOWER_IS_BETTER],
        "n_cells": len(spec.cells()), "finished_cells": len(done), "missing": missing,
        "n_patients": len({r["patient"] for r in rows}), "seeds": spec.seeds, "k": spec.k,
        "table": table, "levels": levels, "best": best,
        "cell_seconds": {s: round(v, 1) for s, v in seconds.items()},
        "interval": "95% percentile interval, patients resampled (seeds averaged within a "
                    "patient first)",
    }
    folder.write_json(folder.summary_path, summary)
    folder.write_json(folder.paired_path, paired)
    folder.write_json(folder.reliability_path, _reliability(folder, done, strategies))
    summary["examples"] = _examples(folder, spec, rows, done, metrics, examples) if examples \
        else []
    folder.write_json(folder.summary_path, summary)
    return summary


def _dataset_classes(spec: StudySpec) -> list[str]:
    return list(load_dataset(spec.data).classes)


def _paired(spec: StudySpec, strategies: list[str], classes: list[str], metrics: list[str],
            values: dict) -> dict[str, Any]:
    out: dict[str, Any] = {"references": [r for r in spec.compare if r in strategies],
                           "n_boot": spec.n_boot, "comparisons": {},
                           "method": "per-patient differences (seeds averaged); shared-draw "
                                     "patient bootstrap; Wilcoxon signed-rank; Holm across "
                                     "strategies per reference, class and metric"}
    for ref in out["references"]:
        comp: dict[str, Any] = {s: {c: {} for c in classes} for s in strategies if s != ref}
        for c in classes:
            for m in metrics:
                others = [s for s in strategies if s != ref]
                diffs = [paired_difference(values[s][c][m], values[ref][c][m],
                                           n_boot=spec.n_boot) for s in others]
                adjusted = holm([d["wilcoxon_p"] for d in diffs])
                for s, d, p in zip(others, diffs, adjusted, strict=True):
                    comp[s][c][m] = {**d, "p_holm": p}
        out["comparisons"][ref] = comp
    return out


def _best(strategies: list[str], classes: list[str], metrics: list[str], values: dict,
          table: dict, n_boot: int) -> dict[str, Any]:
    best: dict[str, Any] = {c: {} for c in classes}
    for c in classes:
        for m in metrics:
            sign = -1.0 if m in LOWER_IS_BETTER else 1.0
            ranked = sorted((s for s in strategies if math.isfinite(table[s][c][m]["mean"])),
                            key=lambda s: -sign * table[s][c][m]["mean"])
            if not ranked:
                continue
            top = ranked[0]
            runner = ranked[1] if len(ranked) > 1 else None
            diff = (paired_difference(values[top][c][m], values[runner][c][m], n_boot=n_boot)
                    if runner else None)
            distinct, sentence = _sentence(c, m, top, runner, diff)
            best[c][m] = {"strategy": top, **table[top][c][m], "runner_up": runner,
                          "difference": diff, "distinguishable": distinct, "sentence": sentence}
    return best


def _reliability(folder: StudyFolder, done: list[Cell], strategies: list[str]
                 ) -> dict[str, Any]:
    out: dict[str, dict[str, dict[str, list[float]]]] = {s: {} for s in strategies}
    for cell in done:
        bins = folder.cell(cell.slug, cell.fold, cell.seed).reliability()
        for cls, b in bins.items():
            acc = out[cell.strategy].setdefault(cls, {k: [0.0] * len(v) for k, v in b.items()})
            for k, v in b.items():
                acc[k] = [x + y for x, y in zip(acc[k], v, strict=True)]
    return out


def _examples(folder: StudyFolder, spec: StudySpec, rows: list[dict[str, Any]],
              done: list[Cell], metrics: list[str], n: int) -> list[dict[str, Any]]:
    """Image, label and every strategy's seed-0 prediction for the worst and typical images."""
    from confseg.inference import Predictor

    metric = metrics[0] if metrics else None
    if metric is None:
        return []
    score: dict[str, list[float]] = {}
    fold_of: dict[str, int] = {}
    for r in rows:
        v = r.get(metric)
        if r["seed"] == 0 and isinstance(v, float) and math.isfinite(v):
            score.setdefault(r["id"], []).append(v)
            fold_of[r["id"]] = int(r["fold"])
    if not score:
        return []
    ranked = sorted(score, key=lambda i: float(np.mean(score[i])))
    worst = ranked[: max(1, n // 2)]
    mid = len(ranked) // 2
    typical = [i for i in ranked[mid: mid + n] if i not in worst][: n - len(worst)]
    ds = load_dataset(spec.data)
    items = {it.id: it for it in ds.image_items()}
    chosen = [(kind, i) for kind, ids in (("worst", worst), ("typical", typical)) for i in ids
              if i in items]
    out = []
    for kind, item_id in chosen:
        it = items[item_id]
        grey = to_display(ds.read_image(it), grey=True)
        write_png(folder.example_png(item_id, "image"), grey)
        write_png(folder.example_png(item_id, "label"),
                  overlay_confidence(grey, ds.read_confidence_stack(it)))
        out.append({"id": item_id, "patient": it.patient, "fold": fold_of[item_id],
                    "kind": kind, "metric": metric, "mean_score": float(np.mean(score[item_id])),
                    "predictions": {}})
    for cell in done:  # one model in memory at a time
        mine = [e for e in out if cell.seed == 0 and e["fold"] == cell.fold]
        if not mine:
            continue
        predictor = Predictor.from_run(folder.cell(cell.slug, cell.fold, 0))
        for e in mine:
            it = items[e["id"]]
            image = ds.read_image(it)
            prob = predictor.predict(image)
            write_png(folder.example_png(e["id"], cell.slug),
                      overlay_confidence(to_display(image, grey=True), prob))
            e["predictions"][cell.strategy] = cell.slug
    return out
