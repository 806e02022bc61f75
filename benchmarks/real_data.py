"""Cross-validated training on the shared real datasets; prints one JSON object.

Each patient is tested exactly once (patient-level folds); the per-case rows of all test
folds are pooled and 95 % intervals come from bootstrapping patients.

    python benchmarks/real_data.py lus-cs541 --data ../shared/data/lus-cs541 --work /tmp/b
    python benchmarks/real_data.py qubiq --data ../shared/data/qubiq-brain-growth --work /tmp/b
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from _common import read_per_case

from confseg.config import TrainConfig
from confseg.data import load_dataset
from confseg.data.splits import make_splits, write_splits
from confseg.importers import run_import
from confseg.metrics.bootstrap import summarize_with_ci
from confseg.workflows import train_and_evaluate

LAYOUT = {"lus-cs541": "lus-cs541", "qubiq": "multirater"}


def crossval(data: Path, work: Path, *, strategy: str, model: str, k: int | str, epochs: int,
             size: int, channels: int, batch_size: int, seed: int, folds: list[int] | None,
             metrics: list[str]) -> dict:
    """Train and evaluate every fold; pool test rows; bootstrap over patients."""
    ds = load_dataset(data, validate=False)
    splits = make_splits(ds, k=k, seed=seed)
    write_splits(work / "splits.json", splits)
    rows, per_fold = [], []
    for f in folds if folds is not None else range(splits.k):
        run = work / f"{strategy.replace(':', '')}-f{f}"
        cfg = TrainConfig(data=str(data), out=str(run), splits=str(work / "splits.json"),
                          strategy=strategy, model=model, fold=f, epochs=epochs, size=size,
                          channels=channels, batch_size=batch_size, seed=seed, patience=0,
                          lr=1e-3)
        t0 = time.perf_counter()
        folder = train_and_evaluate(cfg, overwrite=True, quiet=True)
        status = folder.read_status()
        fold_rows = read_per_case(folder.per_case_path())
        rows += fold_rows
        per_fold.append({"fold": f, "test_patients": status["patients"]["test"],
                         "seconds": round(time.perf_counter() - t0, 1),
                         "seconds_per_epoch": status["seconds_per_epoch"]})
        print(f"{strategy} fold {f}: {per_fold[-1]}", file=sys.stderr)
    ci = summarize_with_ci(rows, metrics, ds.classes, n_boot=1000)
    return {"strategy": strategy, "model": model, "epochs": epochs, "size": size,
            "n_images": len(rows) // len(ds.classes), "folds": per_fold, "classes": ci}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("dataset", choices=sorted(LAYOUT))
    ap.add_argument("--data", required=True, help="the shared source folder")
    ap.add_argument("--work", required=True, help="scratch folder (imported data, runs)")
    ap.add_argument("--strategies", default=None)
    ap.add_argument("--model", default=None)
    ap.add_argument("--epochs", type=int, default=None)
    ap.add_argument("--size", type=int, default=None)
    ap.add_argument("--folds", default=None, help="comma-separated subset of folds")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    work = Path(args.work)
    native = work / f"{args.dataset}-native"
    opts = {"class_name": "brain"} if args.dataset == "qubiq" else {}
    if not (native / "dataset.json").exists():
        run_import(LAYOUT[args.dataset], args.data, native, **opts)
    if args.dataset == "lus-cs541":
        defaults = {"strategies": "threshold:0", "model": "fpn-resnet34", "epochs": 20,
                    "size": 256, "k": "loo", "channels": 1, "batch_size": 8}
        metrics = ["dice@any", "iou@any", "hd95", "ece"]
    else:
        defaults = {"strategies": "soft,threshold:0.5,threshold:0", "model": "fpn-resnet34",
                    "epochs": 40, "size": 128, "k": 5, "channels": 1, "batch_size": 8}
        metrics = ["qubiq", "ece", "aece", "brier", "nll", "soft_dice", "dice@0.5", "dice@any"]
    strategies = (args.strategies or defaults["strategies"]).split(",")
    folds = [int(x) for x in args.folds.split(",")] if args.folds else None
    t0 = time.perf_counter()
    results = [crossval(native, work / s.replace(":", ""), strategy=s,
                        model=args.model or defaults["model"], k=defaults["k"],
                        epochs=args.epochs or defaults["epochs"],
                        size=args.size or defaults["size"], channels=defaults["channels"],
                        batch_size=defaults["batch_size"], seed=args.seed, folds=folds,
                        metrics=metrics) for s in strategies]
    print(json.dumps({"dataset": args.dataset, "source": str(args.data),
                      "seconds": round(time.perf_counter() - t0, 1), "results": results},
                     default=float))


if __name__ == "__main__":
    main()
