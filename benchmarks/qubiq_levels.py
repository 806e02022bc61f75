"""Where a QUBIQ score is lost: per-level Dice, threshold recalibration bounds, geometric TTA.

Reads the confseg runs that ``benchmarks/vs_monai.py`` left in ``--work`` (one per fold,
``confseg-NAME-fF``), predicts each fold's test cases with the run's last checkpoint, and
scores the QUBIQ levels (prediction ``> t`` against rater fraction ``> t``) three ways:

* ``levels``: thresholds ``t`` themselves (the QUBIQ score as reported), per level;
* ``grid_midpoints``: the prediction thresholded halfway between the rater-fraction steps
  that each level separates (``(k - 1/2) / R`` for ``R`` raters), a fixed recalibration;
* ``oracle``: per level, the threshold that scores best on these same test cases, an
  in-sample upper bound on what any monotone recalibration of the probabilities could add.

and the QUBIQ score under test-time views beyond the horizontal flip (small rotations and
scalings, each also flipped, resampled back bilinearly).

    OMP_NUM_THREADS=2 python benchmarks/qubiq_levels.py --work /tmp/vsm5 --name b4e70 \
        --data /tmp/vsm4/native > qubiq_levels.json
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from confseg.data import load_dataset
from confseg.data.splits import read_splits
from confseg.inference import Predictor
from confseg.metrics.segmentation import LEVEL_EPS, QUBIQ_THRESHOLDS, qubiq_score

#: Test-time views: (rotation in degrees, scale); each is also averaged with its mirror.
VIEWS: dict[str, list[tuple[float, float]]] = {
    "flip": [(0, 1)],
    "flip+rot5": [(0, 1), (5, 1), (-5, 1)],
    "flip+rot10": [(0, 1), (10, 1), (-10, 1)],
    "flip+scale10": [(0, 1), (0, 0.9), (0, 1.1)],
}


def _warp(x: torch.Tensor, degrees: float, scale: float) -> torch.Tensor:
    """Rotate by ``degrees`` and zoom by ``scale`` about the centre (bilinear, zero padding)."""
    if degrees == 0 and scale == 1:
        return x
    a = math.radians(degrees)
    c, s = math.cos(a) / scale, math.sin(a) / scale
    theta = torch.tensor([[c, -s, 0.0], [s, c, 0.0]]).expand(len(x), 2, 3)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


@torch.inference_mode()
def _predict(net: torch.nn.Module, x: torch.Tensor, views: list[tuple[float, float]]
             ) -> np.ndarray:
    acc = torch.zeros_like(x)
    for degrees, scale in views:
        for flip in (False, True):
            xi = _warp(x.flip(-1) if flip else x, degrees, scale)
            p = _warp(torch.sigmoid(net(xi)), -degrees, 1 / scale)
            acc += p.flip(-1) if flip else p
    return (acc / (2 * len(views))).numpy()


def _dice(pred: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Dice per row of ``(N, P)`` boolean arrays (1 where both are empty)."""
    tp = (pred & ref).sum(1)
    s = pred.sum(1) + ref.sum(1)
    return np.where(s > 0, 2 * tp / np.maximum(s, 1), 1.0)


def _levels(prob: np.ndarray, conf: np.ndarray, thresholds: list[float]) -> np.ndarray:
    """``(levels, N)`` Dice of ``prob > a`` against ``conf > t`` for paired (a, t)."""
    return np.stack([_dice(prob > a + LEVEL_EPS, conf > t + LEVEL_EPS)
                     for a, t in zip(thresholds, QUBIQ_THRESHOLDS, strict=True)])


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, required=True, help="vs_monai.py's --work folder")
    ap.add_argument("--name", default="", help="vs_monai.py's --name of the confseg runs")
    ap.add_argument("--data", type=Path, required=True, help="the native dataset it trained on")
    args = ap.parse_args(argv)
    ds = load_dataset(args.data)
    splits = read_splits(args.work / "splits.json")
    raters = len(ds.raters())
    if not raters:
        ap.error(f"{args.data}: no raters/; the grid midpoints need the rater count")
    probs: dict[str, list[np.ndarray]] = {k: [] for k in VIEWS}
    confs: list[np.ndarray] = []
    runs = {f: args.work / (f"confseg-{args.name}-f{f}" if args.name else f"confseg-f{f}")
            for f in range(splits.k)}
    runs = {f: r for f, r in runs.items() if (r / "checkpoints" / "last.ckpt").is_file()}
    if not runs:
        ap.error(f"{args.work}: no confseg runs named {args.name!r} with a last checkpoint; "
                 "run benchmarks/vs_monai.py there first")
    for f, run in runs.items():
        net = Predictor.from_run(run, checkpoint="last", calibrated=False).model.eval()
        test = set(splits.partition(f, val="none")[2])
        items = [it for it in ds.image_items() if it.patient in test]
        x = torch.stack([torch.from_numpy(ds.read_image(it).astype(np.float32) / 255.0)[None]
                         for it in items])
        confs += [ds.read_confidence_stack(it)[0].reshape(-1) for it in items]
        for k, views in VIEWS.items():
            probs[k] += list(_predict(net, x, views).reshape(len(items), -1))
    conf = np.stack(confs)
    prob = np.stack(probs["flip"])
    t = list(QUBIQ_THRESHOLDS)
    # level t keeps fractions k/R > t: the step it separates is ((k-1)/R, k/R)
    mid = [(math.floor(v * raters + 1e-9) + 0.5) / raters for v in t]
    oracle = []
    for v in t:  # candidates every 0.02, and the level itself (so no level scores lower)
        grid = sorted({*np.round(np.linspace(0.02, 0.98, 49), 2).tolist(), v})
        scores = [_dice(prob > a + LEVEL_EPS, conf > v + LEVEL_EPS).mean() for a in grid]
        oracle.append(float(grid[int(np.argmax(scores))]))
    out: dict[str, Any] = {"benchmark": "qubiq_levels", "work": str(args.work),
                           "name": args.name, "folds": sorted(runs), "cases": len(conf),
                           "raters": raters}
    for key, thr in (("levels", t), ("grid_midpoints", mid), ("oracle", oracle)):
        d = _levels(prob, conf, thr)
        out[key] = {"thresholds": [round(a, 3) for a in thr],
                    "dice_per_level": [round(float(v), 4) for v in d.mean(1)],
                    "qubiq": round(float(d.mean()), 4)}
    # the score as confseg's evaluation computes it (the kernel behind every reported QUBIQ)
    out["tta_qubiq"] = {k: round(float(qubiq_score(np.stack(v), conf).mean()), 4)
                        for k, v in probs.items()}
    print(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    main()
