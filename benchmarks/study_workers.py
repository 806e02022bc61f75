"""How to spend the cores on a study: J worker processes x T threads, one run each, same cells.

Runs the same small study (strategies x folds of the synthetic demo data, short training)
once per setting into a fresh folder and reports the study's wall time, as a ratio against
the first setting measured in the same run. OpenMP waiting is PASSIVE in every worker (the
study's default); ``--spin`` adds the 1 x cores setting with ACTIVE (spin-waiting) threads.

    python benchmarks/study_workers.py --data demo/synthetic --work /tmp/sw > study_workers.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

from confseg.study import StudySpec, run_study
from confseg.study.executors import cpu_cores


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--strategies", nargs="+", default=["threshold:0", "soft"])
    ap.add_argument("--folds", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--model", default="fpn-resnet18")
    args = ap.parse_args(argv)
    cores = cpu_cores()
    settings = [(cores, 1), (1, cores)]
    if cores > 2:
        settings.insert(1, (cores // 2, 2))
    spec = StudySpec(data=str(args.data), strategies=tuple(args.strategies), k=args.folds,
                     base={"model": args.model, "epochs": args.epochs, "size": args.size,
                           "batch_size": 8, "patience": 0, "val": "none"}, n_boot=100)
    rows = []
    for jobs, threads in settings:
        out = args.work / f"j{jobs}t{threads}"
        shutil.rmtree(out, ignore_errors=True)
        log(f"{jobs} workers x {threads} threads: {len(spec.cells())} cells")
        t0 = time.perf_counter()
        s = run_study(spec, out, jobs=jobs, threads=threads, quiet=True, examples=0)
        wall = time.perf_counter() - t0
        rows.append({"jobs": jobs, "threads": threads, "wall_s": round(wall, 1),
                     "finished": s["finished_cells"]})
    ref = rows[0]["wall_s"]
    for r in rows:
        r["ratio_vs_first"] = round(r["wall_s"] / ref, 3)
    result = {"benchmark": "study_workers", "cores": cores, "cells": len(spec.cells()),
              "model": args.model, "epochs": args.epochs, "size": args.size,
              "omp_wait_policy": "PASSIVE in every worker", "load_at_start": os.getloadavg(),
              "settings": rows}
    print(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
