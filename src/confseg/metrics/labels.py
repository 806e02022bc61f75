"""Classification metrics of label vectors, in plain numpy, for the bootstrap's inner loop.

scikit-learn's metric functions validate their input on every call (about 5 ms each here),
and a patient bootstrap calls them tens of thousands of times per downstream task. These
kernels compute the same values (tested against scikit-learn, ties and missing classes
included) on 1-D arrays that the caller has already checked.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.stats import rankdata


def accuracy(y: np.ndarray, pred: np.ndarray) -> float:
    """Fraction of ``pred`` equal to ``y``."""
    return float(np.mean(y == pred))


def balanced_accuracy(y: np.ndarray, pred: np.ndarray) -> float:
    """Mean recall over the classes present in ``y`` (scikit-learn's definition)."""
    return float(np.mean([np.mean(pred[y == c] == c) for c in np.unique(y)]))


def _f1(y: np.ndarray, pred: np.ndarray, c: float) -> float:
    tp = np.sum((pred == c) & (y == c))
    den = np.sum(pred == c) + np.sum(y == c)
    return float(2 * tp / den) if den else 0.0


def f1(y: np.ndarray, pred: np.ndarray) -> float:
    """F1 of class 1 (0 when it is neither predicted nor present)."""
    return _f1(y, pred, 1)


def macro_f1(y: np.ndarray, pred: np.ndarray) -> float:
    """Mean F1 over the classes in ``y`` or ``pred``."""
    return float(np.mean([_f1(y, pred, c) for c in np.union1d(y, pred)]))


def auc(positive: np.ndarray, score: np.ndarray) -> float:
    """ROC AUC of ``score`` for boolean ``positive`` (Mann-Whitney, ties count half).

    NaN when one class is missing.
    """
    n1 = int(positive.sum())
    n0 = positive.size - n1
    if n1 == 0 or n0 == 0:
        return math.nan
    r = rankdata(score)
    return float((r[positive].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def auc_ovr(y: np.ndarray, proba: np.ndarray) -> float:
    """Macro one-vs-rest AUC over the columns of ``proba`` (classes ``0..K-1``).

    NaN when a class has no sample.
    """
    return float(np.mean([auc(y == c, proba[:, c]) for c in range(proba.shape[1])]))


def quadratic_kappa(y: np.ndarray, pred: np.ndarray) -> float:
    """Cohen's kappa with quadratic weights over the sorted labels of ``y`` and ``pred``.

    The weights use label ranks, as scikit-learn's do; NaN when undefined.
    """
    labels = np.union1d(y, pred)
    k = len(labels)
    cm = np.zeros((k, k))
    np.add.at(cm, (np.searchsorted(labels, y), np.searchsorted(labels, pred)), 1)
    expected = np.outer(cm.sum(1), cm.sum(0)) / cm.sum()
    i = np.arange(k)
    w = (i[:, None] - i[None, :]) ** 2
    den = float((w * expected).sum())
    return 1.0 - float((w * cm).sum()) / den if den else math.nan
