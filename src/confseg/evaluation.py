"""Evaluate a run folder: per-case metrics, patient-bootstrap intervals, reliability diagrams.

Writes into the run folder (or ``out``):

- ``summary.json``: per class and metric ``{"mean", "lo", "hi", "n_patients", "n"}`` (95 %
  intervals from resampling patients), plus headline figures and, with ``calibrate``, the
  temperature and before/after calibration metrics;
- ``per_case.csv``: one row per image and class;
- ``reliability_<class>.png``: reliability diagram against the annotator confidence.
"""

from __future__ import annotations

import csv
import io
import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from confseg.annotation import Item
from confseg.bootstrap import summarize_with_ci
from confseg.calibration import reliability_curve
from confseg.dataset import Dataset, load_dataset
from confseg.errors import ConfsegError
from confseg.inference.predictor import Predictor
from confseg.io.atomic import atomic_write_text
from confseg.metrics import image_stats, metric_names, pooled_names, public_row
from confseg.progress import progress_bar
from confseg.splits import read_splits
from confseg.training.config import TrainConfig

SPLITS = ("test", "val", "train", "all")
HEADLINE = ("dice@any", "dice@0.6", "qubiq", "soft_dice", "ece", "dice_truth")


class EvaluationError(ConfsegError):
    """An evaluation request cannot be served."""


def split_items(run: Path, ds: Dataset, split: str, *, same_data: bool) -> list[Item]:
    """Image items of ``split`` for the run's fold (``all`` = every image item)."""
    if split not in SPLITS:
        raise EvaluationError(f"split {split!r}; choose one of {', '.join(SPLITS)}")
    if split == "all":
        return ds.image_items()
    if not same_data:
        raise EvaluationError(f"{ds.root} is not the run's training data; only --split all "
                              "makes sense on other data")
    cfg = TrainConfig.load(run / "config.yaml")
    train_p, val_p, test_p = read_splits(run / "splits.json").partition(cfg.fold)
    pats = set({"train": train_p, "val": val_p, "test": test_p}[split])
    return [it for it in ds.image_items() if it.patient in pats]


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


def _predict(predictor: Predictor, ds: Dataset, items: Sequence[Item],
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


def evaluate_run(run: str | Path, *, data: str | Path | None = None, split: str = "test",
                 calibrate: bool = False, checkpoint: str = "best", out: str | Path | None = None,
                 n_boot: int = 1000, quiet: bool = False) -> dict[str, Any]:
    """Evaluate a trained run and write its summary files.

    Args:
        run: Run folder.
        data: Dataset to evaluate on (default: the run's training data).
        split: ``test`` (the run's test fold), ``val``, ``train`` or ``all``.
        calibrate: Fit a temperature on the validation split and report before/after.
        checkpoint: ``best`` or ``last``.
        out: Output folder (default: the run folder for its own test split, else
            ``run/eval-<split>-<dataset name>``).
        n_boot: Bootstrap replicates.
        quiet: No progress bar.

    Returns:
        The summary dict (also written to ``summary.json``).
    """
    run = Path(run)
    cfg = TrainConfig.load(run / "config.yaml")
    same = data is None or Path(data).resolve() == Path(cfg.data).resolve()
    ds = load_dataset(data or cfg.data)
    items = split_items(run, ds, split, same_data=same)
    if not items:
        raise EvaluationError(f"{run}: the {split} split has no image items")
    predictor = Predictor.from_run(run, checkpoint=checkpoint, calibrated=False)
    if list(predictor.classes) != list(ds.classes):
        raise EvaluationError(f"{ds.root}: classes {list(ds.classes)} differ from the run's "
                              f"{predictor.classes}; evaluate on data with the same classes")
    if out is None:
        out = run if (same and split == "test") else run / f"eval-{split}-{ds.name}"
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with progress_bar(f"evaluate {split}", quiet=quiet) as prog:
        logits = _predict(predictor, ds, items, prog)
    seconds = time.perf_counter() - t0
    temperature, calibration = 1.0, None
    if calibrate:
        if not same:
            raise EvaluationError("--calibrate fits on the run's validation split; evaluate on "
                                  "the training dataset")
        val_items = split_items(run, ds, "val", same_data=True)
        val_logits = _predict(predictor, ds, val_items, None)
        temperature = fit_temperature(
            val_logits, [ds.read_confidence_stack(it) for it in val_items],
            [None if (m := ds.read_ignore(it)) is None else ~m for it in val_items])
        atomic_write_text(run / "calibration.json", json.dumps(
            {"temperature": temperature, "fitted_on": "val", "objective": "soft-target NLL"},
            indent=1) + "\n")
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
        atomic_write_text(out / "per_case_calibrated.csv", _per_case_csv(rows_t, truth))
    summary: dict[str, Any] = {
        "run": str(run), "data": str(ds.root), "split": split, "checkpoint": checkpoint,
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
    if calibration:
        summary["calibration"] = calibration
    atomic_write_text(out / "per_case.csv", _per_case_csv(rows, truth))
    from confseg.report.plots import plot_reliability

    for cls in ds.classes:
        centers, mean_pred, mean_conf, counts = reliability_curve(rows, cls)
        plot_reliability(centers, mean_pred, mean_conf, counts,
                         title=f"{cls} (ECE {per_class[cls]['ece']['mean']:.3f})",
                         out_png=out / f"reliability_{cls}.png")
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=1, default=float) + "\n")
    return summary
