"""The numpy label metrics equal scikit-learn's, ties, missing classes and edge cases included."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from sklearn import metrics as m

from confseg.metrics import labels as lab


@pytest.mark.parametrize("seed", range(20))
def test_binary_metrics_match_sklearn(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(5, 60))
    y = rng.integers(0, 2, n)
    pred = rng.integers(0, 2, n)
    score = np.round(rng.random(n), 1)  # rounded: ties
    assert lab.accuracy(y, pred) == pytest.approx(m.accuracy_score(y, pred))
    assert lab.f1(y, pred) == pytest.approx(m.f1_score(y, pred, zero_division=0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert lab.balanced_accuracy(y, pred) == pytest.approx(m.balanced_accuracy_score(y, pred))
    if len(set(y)) == 2:
        assert lab.auc(y == 1, score) == pytest.approx(m.roc_auc_score(y, score))
    else:
        assert math.isnan(lab.auc(y == 1, score))


@pytest.mark.parametrize("seed", range(20))
def test_multiclass_and_ordinal_metrics_match_sklearn(seed):
    rng = np.random.default_rng(100 + seed)
    n, k = int(rng.integers(6, 80)), int(rng.integers(3, 5))
    y = rng.integers(0, k, n)
    pred = rng.integers(0, k - 1, n)  # one class never predicted
    proba = rng.dirichlet(np.ones(k), n)
    assert lab.macro_f1(y, pred) == pytest.approx(
        m.f1_score(y, pred, average="macro", zero_division=0))
    assert lab.quadratic_kappa(y, pred) == pytest.approx(
        m.cohen_kappa_score(y, pred, weights="quadratic"))
    if len(set(y)) == k:
        assert lab.auc_ovr(y, proba) == pytest.approx(
            m.roc_auc_score(y, proba, multi_class="ovr", labels=list(range(k))))
    else:
        assert math.isnan(lab.auc_ovr(y, proba))


def test_edge_cases():
    y = np.array([1, 1, 1])
    assert lab.f1(np.zeros(3), np.zeros(3)) == 0.0  # class 1 neither present nor predicted
    assert math.isnan(lab.auc(y == 1, np.array([0.1, 0.2, 0.3])))
    assert math.isnan(lab.quadratic_kappa(y, y))  # one label: kappa undefined
    assert lab.quadratic_kappa(np.array([0, 1, 2, 3]), np.array([0, 1, 2, 3])) == 1.0
    # ordinal labels that are not 0..K-1 are weighted by rank, as scikit-learn does
    a, b = np.array([1, 3, 3, 7, 7]), np.array([1, 3, 7, 7, 3])
    assert lab.quadratic_kappa(a, b) == pytest.approx(m.cohen_kappa_score(a, b,
                                                                          weights="quadratic"))
