"""Nested CV and nested strategy selection on constructed data with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from confseg.downstream.evaluate import bootstrap, nested_cv, select_nested
from confseg.downstream.tasks import TaskTable


def _table(X, y, kind="regression", classes=()):
    groups = np.array([f"p{i // 2}" for i in range(len(y))])  # 2 samples per patient
    return TaskTable(task="sf" if kind == "regression" else "outcome", kind=kind, X=X, y=y,
                     groups=groups, features=[f"f{j}" for j in range(X.shape[1])],
                     keys=[str(i) for i in range(len(y))], classes=classes)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    signal = rng.normal(size=(48, 1))
    y = 300 + 40 * signal[:, 0] + rng.normal(0, 5, 48)
    good = np.hstack([signal, rng.normal(size=(48, 2))])
    noise = rng.normal(size=(48, 3))
    return y, good, noise


def test_informative_features_win_and_nested_selection_picks_them(data):
    y, good, noise = data
    fits = {name: nested_cv(_table(X, y), repeats=2, folds=4, seed=0)
            for name, X in (("good", good), ("noise", noise))}
    assert fits["good"]["metrics"]["mae"] < 10 < fits["noise"]["metrics"]["mae"]
    assert fits["good"]["metrics"]["pearson_r"] > 0.9
    sel = select_nested(fits)
    assert sel["chosen"] == {"good": 8}  # chosen in every one of the 2 x 4 outer splits
    np.testing.assert_allclose(sel["pred"], fits["good"]["pred"])
    groups = _table(good, y).groups
    ci = bootstrap("regression", y, groups, fits["good"], n_boot=100)
    assert ci["mae"]["lo"] <= ci["mae"]["mean"] <= ci["mae"]["hi"]
    diff = bootstrap("regression", y, groups, fits["good"], other=fits["noise"], n_boot=100)
    assert diff["mae"]["hi"] < 0  # better on every draw: an interval below 0


def test_binary_outcome_with_identical_splits(data):
    y, good, _ = data
    yb = (y > np.median(y)).astype(int)
    fit = nested_cv(_table(good, yb, "binary", ("0", "1")), repeats=2, folds=4, seed=1)
    assert fit["metrics"]["auc"] > 0.9 and fit["proba"].shape == (48, 2)
    again = nested_cv(_table(good, yb, "binary", ("0", "1")), repeats=2, folds=4, seed=1)
    assert [t[1].tolist() for t in fit["tests"]] == [t[1].tolist() for t in again["tests"]]
