"""Evaluate a run folder: per-case metrics, patient-bootstrap intervals, reliability diagrams.

Writes into the run folder for its own test split, else into ``run/eval-<split>-<dataset>/``
(or ``out``). An ensemble (``ensemble=[run2, ...]``) or test-time augmentation (``tta="flip"``)
writes into its own folder, ``run/eval-ensemble-<n>runs[-tta-<tta>]-<split>-<dataset>/`` or
``run/eval-tta-<tta>-<split>-<dataset>/`` (or ``out``), never into a member's files; its
temperature (``calibrate``) is fitted on the combined validation output and goes to that
folder's ``calibration.json``. :mod:`confseg.runs` names the files:

- ``summary.json``: per class and metric ``{"mean", "lo", "hi", "n_patients", "n"}`` (95 %
  intervals from resampling patients), plus headline figures and, with ``calibrate``, the
  temperature and before/after calibration metrics;
- ``per_case.csv``: one row per image and class;
- ``reliability_<class>.png``: reliability diagram against the annotator confidence;
- ``examples/<id>_label.png``, ``<id>_pred.png``: overlays of a few images, drawn from the same
  (uncalibrated) predictions as the metrics, for the report.
"""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from confseg.data import Dataset, Item, load_dataset
from confseg.errors import EvaluationError
from confseg.inference import Ensemble, Predictor, ProbabilityModel, check_tta
from confseg.io.atomic import atomic_write_text
from confseg.io.images import write_png
from confseg.metrics.bootstrap import summarize_with_ci
from confseg.metrics.calibration import curve_from_bins, reliability_bins
from confseg.metrics.segmentation import (
    HEADLINE,
    image_stats,
    metric_names,
    pooled_names,
    public_row,
)
from confseg.preprocess import to_display
from confseg.progress import progress_bar
from confseg.runs import EvalFolder, RunFolder
from confseg.viz.overlay import overlay_confidence
from confseg.viz.plots import plot_reliability


def fit_temperature(logits: Sequence[torch.Tensor], confs: Sequence[np.ndarray],
                    valids: Sequence[np.ndarray | None], *, max_pixels: int = 2_000_000,
                    seed: int = 0) -> float:
    """Temperature ``T`` minimising the soft-target NLL of ``sigmoid(z / T)`` vs confidence.

    One scalar for all classes, fitted by L-BFGS on ``log T`` over (a random subsample of) the
    valid pixels of the validation images.
    """
    zs, cs = [], []
    for z, c, v in zip(logits, confs, valids, strict=True):
        m = np.ones(c.shape, bool) if v is None else np.broadcast_to(v, c.shape)
        zs.append(z.numpy()[m])
        cs.append(c[m])
    z = torch.from_numpy(np.concatenate(zs)).double()
    c = torch.from_numpy(np.concatenate(cs)).double()
    if z.numel() > max_pixels:
        idx = torch.from_numpy(np.random.default_rng(seed).choice(z.numel(), max_pixels,
                                                                   replace=False))
        z, c = z[idx], c[idx]
    log_t = torch.zeros((), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([log_t], lr=0.5, max_iter=100, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(z / log_t.exp(), c)
        loss.backward()
        return loss

    opt.step(closure)
    return float(log_t.detach().exp().clamp(0.05, 20.0))


def _stats_rows(ds: Dataset, items: Sequence[Item], logits: Sequence[torch.Tensor],
                temperatures: Sequence[float]) -> list[list[dict[str, Any]]]:
    """Per-image statistics at each temperature; reference maps are read once per item."""
    rows: list[list[dict[str, Any]]] = [[] for _ in temperatures]
    for it, z in zip(items, logits, strict=True):
        conf = ds.read_confidence_stack(it)
        ign = ds.read_ignore(it)
        truth = None
        if it.truth:
            truth = np.stack([ds.read_truth(it, c) if c in it.truth
                              else np.zeros(conf.shape[1:], bool) for c in ds.classes])
        for out, t in zip(rows, temperatures, strict=True):
            prob = torch.sigmoid(z / t).numpy()
            for r in image_stats(prob, conf, ignore=ign, truth=truth, classes=ds.classes):
                r.update(id=it.id, patient=it.patient, view=it.view, day=it.day)
                out.append(r)
    return rows


def _predict(predictor: ProbabilityModel, ds: Dataset, items: Sequence[Item],
             progress: Callable[[int, int], None] | None, batch_size: int = 8
             ) -> list[torch.Tensor]:
    out: list[torch.Tensor] = []
    for i in range(0, len(items), batch_size):
        chunk = items[i:i + batch_size]
        out.extend(predictor.logits_many([ds.read_image(it) for it in chunk],
                                         batch_size=batch_size))
        if progress:
            progress(min(i + batch_size, len(items)), len(items))
    return out


def _per_case_csv(rows: Sequence[dict[str, Any]], truth: bool) -> str:
    cols = ["id", "patient", "view", "day", "class", *metric_names(truth=truth)]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols, extrasaction="ignore")
    w.writeheader()
    for r in rows:
        w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v)
                    for k, v in public_row(r).items()})
    return buf.getvalue()


def _write_examples(folder: EvalFolder, ds: Dataset, items: Sequence[Item],
                    logits: Sequence[torch.Tensor], n: int) -> list[str]:
    """Label and prediction overlays of the first ``n`` items; returns their ids."""
    ids = []
    for it, z in list(zip(items, logits, strict=True))[:n]:
        grey = to_display(ds.read_image(it), grey=True)
        write_png(folder.example_png(it.id, "label"),
                  overlay_confidence(grey, ds.read_confidence_stack(it)))
        write_png(folder.example_png(it.id, "pred"),
                  overlay_confidence(grey, torch.sigmoid(z).numpy()))
        ids.append(it.id)
    return ids


def _members_share_split(members: Sequence[RunFolder], ds: Dataset, split: str,
                         calibrate: bool) -> None:
    """Refuse members whose test/val/train split differs from the first member's.

    Every member must be trained on ``ds`` with the first one's splits and fold, unless the
    evaluation is of ``--split all`` without ``--calibrate`` (which needs the validation split).
    """
    if split == "all" and not calibrate:
        return
    first = members[0]
    want = first.partition()
    for m in members[1:]:
        what = "--calibrate" if split == "all" else f"--split {split}"
        if not m.is_training_data(ds):
            raise EvaluationError(f"{m.root}: not trained on {ds.root}; an ensemble's {what} "
                                  "needs every member trained on it (else use --split all)")
        if m.partition() != want:
            raise EvaluationError(f"{m.root}: other splits or fold than {first.root}; an "
                                  f"ensemble's {what} needs members that share splits.json "
                                  "and fold (e.g. different seeds); else use --split all")


def _ensemble_fields(members: Sequence[RunFolder], checkpoint: str, tta: str | None
                     ) -> dict[str, Any]:
    """What summary.json records about an ensemble (or TTA) evaluation."""
    cfgs = [m.config for m in members]

    def joined(values: Sequence[Any]) -> Any:
        return values[0] if len(set(values)) == 1 else "+".join(map(str, values))

    return {
        "model": joined([c.model for c in cfgs]), "strategy": joined([c.strategy for c in cfgs]),
        "fold": cfgs[0].fold if len({c.fold for c in cfgs}) == 1 else None,
        "ensemble": len(members), "runs": [str(m.root) for m in members],
        "checkpoint": checkpoint, "tta": tta,
        "members": [{"run": str(m.root), "model": c.model, "strategy": c.strategy,
                     "fold": c.fold, "seed": c.seed} for m, c in zip(members, cfgs, strict=True)],
        "averaging": "mean of member probabilities (sigmoid of each member's logits)"
                     + (" over the image and its left-right flip" if tta == "flip" else ""),
    }


def evaluate_run(run: str | Path | RunFolder, *, data: str | Path | Dataset | None = None,
                 split: str = "test", calibrate: bool = False, checkpoint: str = "best",
                 out: str | Path | None = None, n_boot: int = 1000, examples: int = 3,
                 quiet: bool = False, ensemble: Sequence[str | Path | RunFolder] = (),
                 tta: str | None = None) -> dict[str, Any]:
    """Evaluate a trained run (or an ensemble led by it) and write its summary files.

    Args:
        run: Run folder.
        data: Dataset (folder or loaded) to evaluate on (default: the run's training data).
        split: ``test`` (the run's test fold), ``val``, ``train`` or ``all``.
        calibrate: Fit a temperature on the validation split and report before/after.
        checkpoint: ``best`` or ``last``.
        out: Output folder (default: the run folder for its own test split, else
            ``run/eval-<split>-<dataset name>``; an ensemble or TTA evaluation defaults to
            :meth:`~confseg.runs.RunFolder.ensemble_folder`).
        n_boot: Bootstrap replicates.
        examples: Number of images drawn as overlays into ``examples/``.
        quiet: No progress bar.
        ensemble: More run folders whose probabilities are averaged with ``run``'s. For
            ``test``, ``val``, ``train`` (and ``calibrate``) every member must share the
            run's training data, splits and fold; other ensembles only ``split="all"``.
        tta: ``"flip"``: also average each image's left-right mirror.

    Returns:
        The summary dict (also written to ``summary.json``); ``summary["out"]`` is the folder
        it was written to.
    """
    tta = check_tta(tta)  # options first, before any work
    folder = (run if isinstance(run, RunFolder) else RunFolder(run)).require()
    members = [folder, *((m if isinstance(m, RunFolder) else RunFolder(m)).require()
                         for m in ensemble)]
    combined = len(members) > 1 or tta is not None
    cfg = folder.config
    ds = data if isinstance(data, Dataset) else load_dataset(data or cfg.data)
    same = folder.is_training_data(ds)
    if calibrate and not same:
        raise EvaluationError("--calibrate fits on the run's validation split; evaluate on "
                              "the training dataset")
    if calibrate and not cfg.has_validation:
        raise EvaluationError(f"{folder.root}: trained with --val none, so it has no "
                              "validation patients to fit a temperature on; retrain with "
                              "--val inner:0.2 to calibrate")
    items = folder.items(ds, split)
    if not items:
        raise EvaluationError(f"{folder.root}: the {split} split has no image items")
    predictor: ProbabilityModel
    if combined:
        _members_share_split(members, ds, split, calibrate)
        predictor = Ensemble.from_runs(members, checkpoint=checkpoint, tta=tta)
    else:
        predictor = Predictor.from_run(folder, checkpoint=checkpoint, calibrated=False)
    if list(predictor.classes) != list(ds.classes):
        raise EvaluationError(f"{ds.root}: classes {list(ds.classes)} differ from the run's "
                              f"{predictor.classes}; evaluate on data with the same classes")
    if out is not None:
        dest = EvalFolder(out)
    elif combined:
        dest = folder.ensemble_folder(len(members), split, ds.name, tta=tta)
    elif same and split == "test":
        dest = folder
    else:
        dest = folder.eval_folder(split, ds.name)
    t0 = time.perf_counter()
    with progress_bar(f"evaluate {split}", quiet=quiet) as prog:
        logits = _predict(predictor, ds, items, prog)
    seconds = time.perf_counter() - t0
    temperature, calibration = 1.0, None
    if calibrate:
        val_items = folder.items(ds, "val")
        val_logits = _predict(predictor, ds, val_items, None)
        temperature = fit_temperature(
            val_logits, [ds.read_confidence_stack(it) for it in val_items],
            [None if (m := ds.read_ignore(it)) is None else ~m for it in val_items])
        if not combined:
            folder.write_temperature(temperature, fitted_on="val", objective="soft-target NLL")
    dest.root.mkdir(parents=True, exist_ok=True)  # created only once the predictions exist
    if calibrate and combined:  # the ensemble's own temperature: never into a member's folder
        dest.write_temperature(temperature, fitted_on="val", objective="soft-target NLL",
                               applies_to="logit of the averaged probability",
                               ensemble=len(members), runs=[str(m.root) for m in members],
                               checkpoint=checkpoint, tta=tta)
    temps = (1.0, temperature) if calibrate else (1.0,)
    rows, *calibrated_rows = _stats_rows(ds, items, logits, temps)
    truth = any(it.truth for it in items)
    metrics = [m for m in metric_names(truth=truth) if not m.startswith("empty_ref")]
    metrics += list(pooled_names(truth=truth))
    per_class = summarize_with_ci(rows, metrics, ds.classes, n_boot=n_boot)
    if calibrate:
        rows_t = calibrated_rows[0]
        after = summarize_with_ci(rows_t, ["ece", "aece", "brier", "nll", "ece_pooled"],
                                  ds.classes, n_boot=n_boot)
        calibration = {"temperature": temperature, "fitted_on": "val",
                       "before": {c: {m: per_class[c][m] for m in after[c]} for c in ds.classes},
                       "after": after}
        atomic_write_text(dest.per_case_path(calibrated=True), _per_case_csv(rows_t, truth))
    summary: dict[str, Any] = {
        "run": str(folder.root), "data": str(ds.root), "split": split, "checkpoint": checkpoint,
        "model": cfg.model, "strategy": cfg.strategy, "fold": cfg.fold,
        "n_images": len(items), "n_patients": len({it.patient for it in items}),
        "patients": sorted({it.patient for it in items}),
        "inference_seconds": round(seconds, 3),
        "interval": "95% percentile bootstrap over patients (1000 replicates)"
                    if n_boot == 1000 else f"95% bootstrap over patients ({n_boot} replicates)",
        "headline": {c: {m: per_class[c][m]["mean"] for m in HEADLINE if m in per_class[c]}
                     for c in ds.classes},
        "classes": per_class,
    }
    if combined:
        summary.update(_ensemble_fields(members, checkpoint, tta))
    if calibration:
        summary["calibration"] = calibration
    atomic_write_text(dest.per_case_path(), _per_case_csv(rows, truth))
    bins = {cls: reliability_bins(rows, cls) for cls in ds.classes}
    dest.write_reliability(bins)
    for cls in ds.classes:
        centers, mean_pred, mean_conf, counts = curve_from_bins(bins[cls])
        plot_reliability(centers, mean_pred, mean_conf, counts,
                         title=f"{cls} (ECE {per_class[cls]['ece']['mean']:.3f})",
                         out_png=dest.reliability_png(cls))
    if examples:
        summary["examples"] = {
            "ids": _write_examples(dest, ds, items, logits, examples),
            "model": "uncalibrated (temperature 1), the same predictions as the metrics",
        }
    summary["out"] = str(dest.root)
    dest.write_summary(summary)
    return summary
