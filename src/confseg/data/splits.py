"""Patient-grouped K-fold splits (``splits.json``). Frames of one patient never straddle folds.

``splits.json``::

    {"k": 5, "seed": 0, "group": "patient",
     "folds": [["p001", "p007"], ["p002", ...], ...]}

For fold ``f`` the test set is ``folds[f]``; the validation set (early stopping, checkpoint
selection, calibration) is ``folds[(f + 1) % k]``; training uses the remaining folds. With
two folds there is no room for a validation fold, and an error says so.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from confseg.data.dataset import Dataset
from confseg.errors import SplitError
from confseg.io.atomic import atomic_write_text


@dataclass(frozen=True, kw_only=True)
class Splits:
    """Patients per fold.

    Attributes:
        folds: One tuple of patient ids per fold.
        seed: Seed used to assign patients.
    """

    folds: tuple[tuple[str, ...], ...]
    seed: int = 0

    def __post_init__(self) -> None:
        seen: dict[str, int] = {}
        for f, pats in enumerate(self.folds):
            for p in pats:
                if p in seen:
                    raise SplitError(f"patient {p!r} is in folds {seen[p]} and {f}; a patient must "
                                     "be in exactly one fold (regenerate: `confseg split`)")
                seen[p] = f

    @property
    def k(self) -> int:
        """Number of folds."""
        return len(self.folds)

    def patients(self) -> list[str]:
        """All patients, in fold order."""
        return [p for pats in self.folds for p in pats]

    def fold_of(self, patient: str) -> int:
        """Fold index of ``patient``."""
        for f, pats in enumerate(self.folds):
            if patient in pats:
                return f
        raise SplitError(f"patient {patient!r} is in no fold")

    def _check_fold(self, fold: int) -> None:
        if not 0 <= fold < self.k:
            raise SplitError(f"fold {fold} does not exist; this split has folds 0..{self.k - 1}")

    def partition(self, fold: int, *, val: str = "next-fold", seed: int = 0
                  ) -> tuple[list[str], list[str], list[str]]:
        """Patients for ``(train, val, test)`` of one fold; the test fold is never touched.

        Args:
            fold: Test fold index.
            val: How validation patients are chosen (see :func:`parse_val`): ``next-fold``
                (the next fold: trains on (k-2)/k of the patients), ``inner:F`` (a fraction F
                of the non-test patients, drawn with ``seed``: trains on about (1-F)(k-1)/k),
                ``none`` (no validation: trains on every non-test patient).
            seed: Seed of the ``inner:F`` draw (the run's split seed and fold are mixed in).
        """
        self._check_fold(fold)
        mode, frac = parse_val(val)
        test = list(self.folds[fold])
        rest = [p for p in self.patients() if p not in set(test)]
        chosen: list[str] = []
        if mode == "next-fold":
            if self.k < 3:
                raise SplitError(f"{self.k} folds leave no fold for validation; use k >= 3, or "
                                 "--val inner:0.2 / --val none")
            chosen = list(self.folds[(fold + 1) % self.k])
        elif mode == "inner":
            n = max(1, round(frac * len(rest)))
            if n >= len(rest):
                raise SplitError(f"--val {val}: {len(rest)} non-test patient(s) leave none to "
                                 "train on; use a smaller fraction or --val none")
            order = np.random.default_rng([seed, fold, 7919]).permutation(sorted(rest))
            chosen = sorted(str(p) for p in order[:n])
        train = [p for p in rest if p not in set(chosen)]
        return train, chosen, test

    def to_json(self) -> dict:
        """The splits.json object."""
        return {"k": self.k, "seed": self.seed, "group": "patient",
                "folds": [list(f) for f in self.folds]}


def make_splits(dataset: Dataset, *, k: int | str = 5, seed: int = 0) -> Splits:
    """Assign patients to ``k`` folds, balancing the number of image items per fold.

    Args:
        dataset: The dataset (only image items count toward balance; all patients are assigned).
        k: Number of folds, or ``"loo"`` for one patient per fold.
        seed: Shuffle seed; ties are broken randomly, so different seeds give different splits.
    """
    counts = Counter(it.patient for it in dataset.items)
    patients = sorted(counts)
    if k == "loo":
        k = len(patients)
    try:
        k = int(k)
    except (TypeError, ValueError):
        raise SplitError(f"k={k!r}; give a number of folds or 'loo'") from None
    if k < 2:
        raise SplitError(f"k={k}: need at least 2 folds")
    if len(patients) < 2:
        raise SplitError(f"{dataset.root}: {len(patients)} patient(s); patient-grouped folds "
                         "need at least 2 patients (3 to train, validate and test)")
    if k > len(patients):
        raise SplitError(f"k={k} folds but only {len(patients)} patients in {dataset.root}; "
                         f"use k <= {len(patients)}")
    rng = np.random.default_rng(seed)
    order = [patients[i] for i in rng.permutation(len(patients))]
    order.sort(key=lambda p: -counts[p])  # stable: random among equal counts
    folds: list[list[str]] = [[] for _ in range(k)]
    load = [0] * k
    for p in order:
        f = min(range(k), key=lambda i: (load[i], len(folds[i]), i))
        folds[f].append(p)
        load[f] += counts[p]
    return Splits(folds=tuple(tuple(sorted(f)) for f in folds), seed=seed)


def check_splits(splits: Splits, dataset: Dataset, *, where: str = "splits") -> None:
    """Check that ``splits`` covers exactly the dataset's patients.

    Raises:
        SplitError: naming the first unknown or missing patient.
    """
    known = set(dataset.patients())
    listed = set(splits.patients())
    if extra := sorted(listed - known):
        raise SplitError(f"{where}: patient {extra[0]!r} is not in dataset {dataset.root}; "
                         "regenerate the splits for this dataset")
    if missing := sorted(known - listed):
        raise SplitError(f"{where}: patient {missing[0]!r} of {dataset.root} is in no fold; "
                         "regenerate the splits for this dataset")


def write_splits(path: str | os.PathLike[str], splits: Splits) -> None:
    """Write ``splits.json`` atomically."""
    atomic_write_text(path, json.dumps(splits.to_json(), indent=1) + "\n")


def read_splits(path: str | os.PathLike[str]) -> Splits:
    """Read and check a ``splits.json``.

    Raises:
        SplitError: malformed file or a patient in two folds.
    """
    p = Path(path)
    try:
        obj = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SplitError(f"{p}: not found; create it with `confseg split DATASET`") from None
    except json.JSONDecodeError as exc:
        raise SplitError(f"{p}: not valid JSON ({exc.msg}, line {exc.lineno}); fix or "
                         "regenerate it") from None
    except (UnicodeDecodeError, IsADirectoryError):
        raise SplitError(f"{p}: not a UTF-8 JSON file; regenerate it with `confseg split`"
                         ) from None
    folds = obj.get("folds") if isinstance(obj, dict) else None
    if not isinstance(folds, list) or not all(isinstance(f, list) for f in folds):
        raise SplitError(f"{p}: needs 'folds': a list of lists of patient ids")
    seed = obj.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise SplitError(f"{p}: 'seed' must be a whole number, got {seed!r}")
    if not all(isinstance(x, str | int) and not isinstance(x, bool) for f in folds for x in f):
        raise SplitError(f"{p}: folds must list patient ids (strings)")
    try:
        return Splits(folds=tuple(tuple(str(x) for x in f) for f in folds), seed=seed)
    except SplitError as exc:
        raise SplitError(f"{p}: {exc}") from None


def parse_val(text: str) -> tuple[str, float]:
    """Parse a validation mode: ``next-fold``, ``inner:F`` (0 < F < 1) or ``none``.

    Raises:
        SplitError: naming the value and the valid forms.
    """
    s = str(text).strip().lower()
    if s in ("next-fold", "none"):
        return s, 0.0
    if s.startswith("inner:"):
        try:
            frac = float(s.split(":", 1)[1])
        except ValueError:
            frac = -1.0
        if 0.0 < frac < 1.0:
            return "inner", frac
    raise SplitError(f"validation mode {text!r}; use next-fold, inner:F with 0 < F < 1 "
                     "(e.g. inner:0.2), or none")
