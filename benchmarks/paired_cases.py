"""Paired difference between two evaluations of the same cases (A − B), as JSON.

Each side is one or more ``per_case.csv`` files (a glob, e.g. one evaluation folder per fold
of ``benchmarks/vs_monai.py``'s confseg runs); rows are matched by image id and class, the
per-patient means are differenced, and the interval bootstraps patients (the same kernel as
vs_monai's confseg − plain).

    python benchmarks/paired_cases.py \
        --a '/tmp/vsm5/confseg-b4e70-f*/eval-tta-flip-test-*/per_case.csv' \
        --b '/tmp/vsm5/confseg-b4e70-f*/per_case.csv' > flip_tta_vs_none.json
"""

from __future__ import annotations

import argparse
import glob
import json
from pathlib import Path
from typing import Any

from _common import read_per_case

from confseg.metrics.paired import paired_difference, per_patient_means

METRICS = ("qubiq", "ece", "dice@0.5", "soft_dice", "brier", "dice@0.8", "dice@1.0")


def _rows(ap: argparse.ArgumentParser, pattern: str) -> list[dict[str, Any]]:
    files = sorted(glob.glob(pattern))
    if not files:
        ap.error(f"{pattern}: no per_case.csv matches; give a glob of evaluation files")
    return [r for f in files for r in read_per_case(Path(f))]


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--a", required=True, help="glob of per_case.csv files, side A")
    ap.add_argument("--b", required=True, help="glob of per_case.csv files, side B")
    ap.add_argument("--metrics", nargs="*", default=list(METRICS))
    ap.add_argument("--n-boot", type=int, default=2000)
    args = ap.parse_args(argv)
    a, b = _rows(ap, args.a), _rows(ap, args.b)
    keys_a = {(r["id"], r["class"]) for r in a}
    keys_b = {(r["id"], r["class"]) for r in b}
    if keys_a != keys_b:
        ap.error(f"the sides hold different cases ({len(keys_a ^ keys_b)} unmatched, "
                 f"e.g. {sorted(keys_a ^ keys_b)[0]}); pass evaluations of the same folds")
    out: dict[str, Any] = {"benchmark": "paired_cases", "a": args.a, "b": args.b,
                           "cases": len(keys_a), "a_minus_b": {}}
    for cls in sorted({c for _, c in keys_a}):
        out["a_minus_b"][cls] = {
            m: paired_difference(per_patient_means(a, m, cls=cls), per_patient_means(b, m, cls=cls),
                                 n_boot=args.n_boot)
            for m in args.metrics}
    print(json.dumps(out, indent=1, default=float))
    return out


if __name__ == "__main__":
    main()
