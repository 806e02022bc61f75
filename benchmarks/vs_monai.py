"""confseg's recommended recipe against a plain MONAI script, same folds, same machine, one run.

The plain recipe is what a MONAI user writes in 60 lines (written out in full in
:func:`train_plain_monai`): BasicUNet, the rater fraction as a soft target,
``DiceLoss(sigmoid=True, soft_label=True)`` + BCE, Adam 1e-3, random flips, a fixed number of
epochs, trained on every non-test patient, the last epoch kept. confseg's recipe runs through
confseg's own API (``confseg.training.train`` + ``confseg.evaluation.evaluate_run``). Both
are scored by the same kernels (``confseg.metrics``) against the same reference (the rater
fraction of the imported dataset), on the same patient-level test folds; intervals bootstrap
patients; differences are paired.

    OMP_NUM_THREADS=1 python benchmarks/vs_monai.py --data ../shared/data/qubiq-brain-growth \
        --work /tmp/vsmonai > vs_monai.json
"""

from __future__ import annotations

import argparse
import inspect
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from _common import read_per_case

from confseg.cli.common import parse_sets
from confseg.config import PRESETS, TrainConfig
from confseg.data import load_dataset
from confseg.data.splits import make_splits, write_splits
from confseg.evaluation import evaluate_run
from confseg.importers import run_import
from confseg.metrics.bootstrap import summarize_with_ci
from confseg.metrics.paired import paired_difference, per_patient_means
from confseg.metrics.segmentation import image_stats, public_row
from confseg.runs import RunFolder
from confseg.training import train

METRICS = ("qubiq", "ece", "dice@0.5", "soft_dice", "brier")


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ----- the plain MONAI recipe, as a MONAI user writes it -------------------------------------
def train_plain_monai(images: np.ndarray, targets: np.ndarray, *, epochs: int, batch_size: int,
                      seed: int) -> torch.nn.Module:
    """BasicUNet + soft Dice + BCE, Adam 1e-3, random flips; returns the last-epoch model.

    Args:
        images: ``(N, 1, H, W)`` float32 in [0, 1].
        targets: ``(N, 1, H, W)`` rater fraction in [0, 1].
        epochs: Epochs.
        batch_size: Batch size.
        seed: Seed for weights, shuffling and flips.
    """
    from monai.data import DataLoader, Dataset
    from monai.losses import DiceLoss
    from monai.networks.nets import BasicUNet
    from monai.transforms import Compose, RandFlipd
    from monai.utils import set_determinism

    set_determinism(seed=seed)
    data = [{"image": im, "label": t} for im, t in zip(images, targets, strict=True)]
    aug = Compose([RandFlipd(keys=["image", "label"], prob=0.5, spatial_axis=0),
                   RandFlipd(keys=["image", "label"], prob=0.5, spatial_axis=1)])
    loader = DataLoader(Dataset(data, transform=aug), batch_size=batch_size, shuffle=True)
    net = BasicUNet(spatial_dims=2, in_channels=1, out_channels=1)
    dice = DiceLoss(sigmoid=True, soft_label=True)
    bce = torch.nn.BCEWithLogitsLoss()
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    net.train()
    for _ in range(epochs):
        for batch in loader:
            x, y = torch.as_tensor(batch["image"]), torch.as_tensor(batch["label"])
            opt.zero_grad()
            z = net(x)
            loss = dice(z, y) + bce(z, y)
            loss.backward()
            opt.step()
    set_determinism(seed=None)
    return net.eval()


@torch.inference_mode()
def predict_plain(net: torch.nn.Module, images: np.ndarray) -> np.ndarray:
    """Sigmoid probabilities ``(N, 1, H, W)``."""
    return torch.sigmoid(net(torch.from_numpy(images))).numpy()


# ----- shared scaffolding ---------------------------------------------------------------------
def _arrays(ds, items) -> tuple[np.ndarray, np.ndarray]:
    ims = np.stack([ds.read_image(it).astype(np.float32)[None] / 255.0 for it in items])
    conf = np.stack([ds.read_confidence_stack(it) for it in items]).astype(np.float32)
    return ims, conf


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True, help="raw QUBIQ brain-growth folder, "
                    "or a native confseg dataset (dataset.json)")
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--k", type=int, default=5)
    ap.add_argument("--folds", type=int, nargs="*", default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--plain-epochs", type=int, default=100)
    ap.add_argument("--plain-batch-size", type=int, default=8)
    # confseg's side is the recommended preset; these flags (and --set) change one option
    ap.add_argument("--model", help="confseg recipe: model (default: the preset's)")
    ap.add_argument("--strategy", default="soft", help="confseg recipe: label strategy")
    ap.add_argument("--epochs", type=int, help="confseg recipe: epochs (default: the preset's)")
    ap.add_argument("--batch-size", type=int,
                    help="confseg recipe: batch size (default: the preset's)")
    ap.add_argument("--val", help="confseg recipe: validation mode (default: the preset's)")
    ap.add_argument("--lr", type=float, help="confseg recipe: learning rate")
    ap.add_argument("--augment", type=float, help="confseg recipe: augmentation strength")
    ap.add_argument("--precision", default="auto")
    ap.add_argument("--tta", default="flip", help="confseg recipe: test-time augmentation")
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--n-boot", type=int, default=1000)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="confseg recipe: any other TrainConfig option (repeatable)")
    ap.add_argument("--seeds", type=int, default=1,
                    help="confseg recipe: runs per fold (seeds); more than one are averaged")
    ap.add_argument("--name", default="",
                    help="confseg runs go to WORK/confseg-NAME-fF, so several confseg variants "
                         "share one plain MONAI cache in WORK")
    ap.add_argument("--reuse-confseg", action="store_true",
                    help="reuse confseg runs already trained in --work with the same config "
                         "(e.g. folds trained by parallel invocations); times are the stored ones")
    ap.add_argument("--reuse-plain", action="store_true",
                    help="reuse the plain MONAI folds already trained in --work with the same "
                         "recipe (the plain side is deterministic); its times are the stored ones")
    args = ap.parse_args(argv)
    # confseg's recipe: the recommended preset, then the flags given, then --set KEY=VALUE
    # (the same rule as `confseg train --set`)
    flags = {k: getattr(args, k) for k in ("model", "epochs", "batch_size", "val", "lr",
                                            "augment") if getattr(args, k) is not None}
    recipe = (PRESETS["recommended"] | {"strategy": args.strategy, "size": args.size,
                                        "precision": args.precision, "patience": 0}
              | flags | parse_sets(args.set))
    t_start = time.perf_counter()
    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    native = args.data if (args.data / "dataset.json").is_file() else work / "native"
    if native != args.data and not (native / "dataset.json").is_file():
        run_import("multirater", args.data, native, class_name="brain")
    ds = load_dataset(native)
    splits = make_splits(ds, k=args.k, seed=args.seed)
    write_splits(work / "splits.json", splits)
    classes = list(ds.classes)
    plain_rows: list[dict] = []
    conf_rows: list[dict] = []
    folds_out = []
    for f in args.folds if args.folds is not None else range(splits.k):
        train_p, _, test_p = splits.partition(f, val="none")
        tr = [it for it in ds.image_items() if it.patient in set(train_p)]
        te = [it for it in ds.image_items() if it.patient in set(test_p)]

        def plain_side(f: int = f, tr: list = tr, te: list = te, test_p: tuple = test_p
                       ) -> tuple[float, list[dict]]:
            """The plain MONAI recipe on this fold: training seconds, test rows."""
            cache = work / f"plain-f{f}.json"
            key = {"epochs": args.plain_epochs, "batch_size": args.plain_batch_size,
                   "seed": args.seed, "test": list(test_p)}
            stored = json.loads(cache.read_text()) if cache.is_file() else {}
            if args.reuse_plain and stored.get("key") == key:
                log(f"fold {f}: plain MONAI reused from {cache}")
                plain_s, fold_rows = stored["train_s"], stored["rows"]
            else:
                log(f"fold {f}: plain MONAI, {len(tr)} training images, "
                    f"{args.plain_epochs} epochs")
                x_tr, c_tr = _arrays(ds, tr)
                t0 = time.perf_counter()
                net = train_plain_monai(x_tr, c_tr, epochs=args.plain_epochs,
                                        batch_size=args.plain_batch_size, seed=args.seed)
                plain_s = time.perf_counter() - t0
                x_te, c_te = _arrays(ds, te)
                prob = predict_plain(net, x_te)
                fold_rows = []
                for it, p, c in zip(te, prob, c_te, strict=True):
                    for r in image_stats(p, c, classes=classes):
                        r.update(id=it.id, patient=it.patient)
                        fold_rows.append(public_row(r))
                cache.write_text(json.dumps({"key": key, "train_s": plain_s, "rows": fold_rows},
                                            default=float))
            return plain_s, fold_rows

        def confseg_side(f: int = f) -> tuple[list[RunFolder], float]:
            """confseg's recipe on this fold: its runs (one per seed), training seconds."""
            log(f"fold {f}: confseg {recipe['model']} {recipe['strategy']} val={recipe['val']}, "
                f"{recipe['epochs']} epochs, batch {recipe['batch_size']}")
            name = f"confseg-{args.name}-f{f}" if args.name else f"confseg-f{f}"
            members, conf_s = [], 0.0
            for s in range(args.seeds):  # one run per seed; more than one is averaged
                out = work / (name + (f"-s{s}" if s else ""))
                cfg = TrainConfig(data=str(native), out=str(out),
                                  splits=str(work / "splits.json"), fold=f,
                                  seed=args.seed + s, **recipe)
                old = RunFolder(cfg.out)
                if (args.reuse_confseg and old.is_run() and old.status in ("trained", "finished")
                        and old.config == cfg):
                    log(f"fold {f}: confseg run reused from {old.root}")
                    members.append(old)
                    conf_s += float(old.read_status().get("fit_seconds", 0.0))
                else:
                    t0 = time.perf_counter()
                    members.append(RunFolder(train(cfg, overwrite=True, quiet=True)))
                    conf_s += time.perf_counter() - t0
            return members, conf_s

        # the two sides take turns going first, so a machine that slows down (or speeds
        # up) over a run does not favour one of them
        plain_first = f % 2 == 0
        if plain_first:
            plain_s, fold_rows = plain_side()
            members, conf_s = confseg_side()
        else:
            members, conf_s = confseg_side()
            plain_s, fold_rows = plain_side()
        plain_rows += fold_rows
        run = members[0]
        kw: dict[str, Any] = {"quiet": True, "n_boot": 10, "examples": 0}
        if args.tta != "none" and "tta" in inspect.signature(evaluate_run).parameters:
            kw["tta"] = args.tta
        summary = evaluate_run(run, ensemble=members[1:], **kw)
        rows = read_per_case(Path(summary["out"]) / "per_case.csv")
        conf_rows += [r for r in rows]
        folds_out.append({"fold": f, "test_patients": list(test_p), "train_images": len(tr),
                          "plain_train_s": round(plain_s, 1), "confseg_train_s": round(conf_s, 1),
                          "confseg_precision": run.read_status().get("precision"),
                          "first": "plain" if plain_first else "confseg",
                          "tta": kw.get("tta", "none")})
        log(f"fold {f}: plain {plain_s:.0f} s, confseg {conf_s:.0f} s")
    result: dict[str, Any] = {
        "benchmark": "vs_monai", "data": str(args.data), "k": args.k, "seed": args.seed,
        "torch_threads": torch.get_num_threads(),
        "plain": {"recipe": f"BasicUNet, soft target, DiceLoss(soft_label)+BCE, Adam 1e-3, "
                            f"flips, {args.plain_epochs} epochs, batch {args.plain_batch_size}, "
                            "all non-test patients",
                  "metrics": summarize_with_ci(plain_rows, METRICS, classes, n_boot=args.n_boot)},
        "confseg": {"recipe": recipe | {"tta": args.tta, "seeds": args.seeds},
                    "metrics": summarize_with_ci(conf_rows, METRICS, classes,
                                                 n_boot=args.n_boot)},
        "paired_confseg_minus_plain": {
            m: paired_difference(per_patient_means(conf_rows, m, cls=classes[0]),
                                 per_patient_means(plain_rows, m, cls=classes[0]),
                                 n_boot=args.n_boot)
            for m in METRICS},
        "folds": folds_out,
        "train_seconds": {"plain": round(sum(f["plain_train_s"] for f in folds_out), 1),
                          "confseg": round(sum(f["confseg_train_s"] for f in folds_out), 1)},
    }
    ts = result["train_seconds"]
    result["train_time_ratio_confseg_vs_plain"] = round(ts["confseg"] / max(ts["plain"], 1e-9), 3)
    result["wall_seconds"] = round(time.perf_counter() - t_start, 1)
    print(json.dumps(result, indent=1, default=float))
    return result


if __name__ == "__main__":
    main()
