"""Nested, patient-grouped cross-validation of a downstream task with scikit-learn.

Outer loop: ``repeats`` x ``folds`` patient-grouped splits (``GroupKFold`` /
``StratifiedGroupKFold`` with shuffling, one seed per repeat, so every source sees identical
splits). Inner loop: ``GridSearchCV`` over a small grid with a grouped split of the training
patients. Estimators are pipelines (median imputation, scaling, then ridge / logistic
regression, or histogram gradient boosting). Point estimates average the repeats; intervals
bootstrap patients on the repeat-averaged out-of-fold predictions; paired differences
between two sources use the same patient draws.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np

from confseg.downstream.tasks import TaskTable
from confseg.errors import ConfsegError
from confseg.metrics import labels as lab

ESTIMATORS = ("linear", "gbm")
HEADLINE = {"regression": "mae", "binary": "auc", "multiclass": "macro_f1", "ordinal": "qwk"}
LOWER_IS_BETTER = ("mae", "rmse")


def _estimator(kind: str, name: str, seed: int) -> tuple[Any, dict[str, list[Any]], str]:
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    if name not in ESTIMATORS:
        raise ConfsegError(f"--estimator {name!r}; choose one of {', '.join(ESTIMATORS)}")
    reg = kind == "regression"
    if name == "linear":
        model = Ridge() if reg else LogisticRegression(max_iter=2000, class_weight="balanced")
        grid = {"model__alpha": [0.1, 1.0, 10.0, 100.0]} if reg else {
            "model__C": [0.01, 0.1, 1.0, 10.0]}
        steps = [("impute", SimpleImputer(strategy="median", keep_empty_features=True)),
                 ("scale", StandardScaler()), ("model", model)]
    else:
        model = (HistGradientBoostingRegressor(random_state=seed) if reg else
                 HistGradientBoostingClassifier(random_state=seed, class_weight="balanced"))
        grid = {"model__max_depth": [2, 3], "model__learning_rate": [0.05, 0.1]}
        steps = [("model", model)]
    scoring = {"regression": "neg_mean_absolute_error", "binary": "roc_auc",
               "multiclass": "f1_macro", "ordinal": "accuracy"}[kind]
    return Pipeline(steps), grid, scoring


def _splitter(kind: str, n_splits: int, seed: int, y: np.ndarray) -> Any:
    """Grouped folds, stratified for classes when every class can fill every fold."""
    from sklearn.model_selection import GroupKFold, StratifiedGroupKFold

    if kind == "regression" or np.unique(y, return_counts=True)[1].min() < n_splits:
        return GroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    return StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)


def metrics(kind: str, y: np.ndarray, pred: np.ndarray, proba: np.ndarray | None
            ) -> dict[str, float]:
    """The task's metrics of predictions ``pred`` (and class probabilities ``proba``)."""
    if kind == "regression":
        r = float(np.corrcoef(y, pred)[0, 1]) if len(y) > 2 and np.std(pred) > 0 else math.nan
        err = np.asarray(y, dtype=np.float64) - pred
        return {"mae": float(np.mean(np.abs(err))), "rmse": float(np.sqrt(np.mean(err**2))),
                "pearson_r": r}
    # numpy kernels equal to scikit-learn's (tests/test_metrics_labels.py), without its
    # per-call validation: the bootstrap calls this tens of thousands of times per task
    out = {"accuracy": lab.accuracy(y, pred)}
    if kind == "binary":
        out["auc"] = (lab.auc(y == 1, proba[:, 1]) if proba is not None and proba.shape[1] == 2
                      else math.nan)
        out["balanced_accuracy"] = lab.balanced_accuracy(y, pred)
        out["f1"] = lab.f1(y, pred)
    elif kind == "multiclass":
        out["macro_f1"] = lab.macro_f1(y, pred)
        out["auc_ovr"] = lab.auc_ovr(y, proba) if proba is not None else math.nan
    else:
        out["qwk"] = lab.quadratic_kappa(y, pred)
    return out


def nested_cv(table: TaskTable, *, estimator: str = "linear", repeats: int = 5, folds: int = 5,
              inner: int = 3, seed: int = 0) -> dict[str, Any]:
    """Out-of-fold predictions of ``table`` over repeated patient-grouped splits.

    Returns:
        ``{"pred", "proba", "split_metrics", "metrics", "best_params"}``: ``pred`` is the
        repeat-averaged prediction per sample (regression) or the class with the highest
        averaged probability; ``metrics`` the mean of the per-repeat metrics.
    """
    from sklearn.model_selection import GridSearchCV

    kind, X, y, g = table.kind, table.X, table.y, table.groups
    n_groups = len(set(g))
    k = min(folds, n_groups)
    classes = np.unique(y) if kind != "regression" else None
    preds = np.full((repeats, len(y)), np.nan)
    probas = (np.zeros((repeats, len(y), len(classes))) if classes is not None else None)
    split_metrics, params = [], []
    inner_scores: list[float] = []
    tests: list[tuple[int, np.ndarray]] = []
    for r in range(repeats):
        for tr, te in _splitter(kind, k, seed + r, y).split(X, y, g):
            if classes is not None and len(np.unique(y[tr])) < 2:  # one class to learn from
                c = int(np.searchsorted(classes, y[tr][0]))
                probas[r][np.ix_(te, [c])] = 1.0
                preds[r, te] = classes[c]
                params.append({})
                inner_scores.append(math.nan)
                tests.append((r, te))
                split_metrics.append({"repeat": r, **metrics(kind, y[te], preds[r, te],
                                                             probas[r][te])})
                continue
            pipe, grid, scoring = _estimator(kind, estimator, seed)
            n_inner = min(inner, len(set(g[tr])))
            search = GridSearchCV(pipe, grid, scoring=scoring, error_score=np.nan,
                                  cv=_splitter(kind, n_inner, seed + 1000 + r, y[tr]))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                search.fit(X[tr], y[tr], groups=g[tr])
            params.append(search.best_params_)
            inner_scores.append(float(search.best_score_))
            tests.append((r, te))
            if probas is not None:
                p = search.predict_proba(X[te])
                cols = [int(np.searchsorted(classes, c)) for c in search.classes_]
                probas[r][np.ix_(te, cols)] = p
                preds[r, te] = classes[cols][np.argmax(p, axis=1)]
            else:
                preds[r, te] = search.predict(X[te])
            split_metrics.append({"repeat": r, **metrics(
                kind, y[te], preds[r, te], probas[r][te] if probas is not None else None)})
    per_repeat = [metrics(kind, y, preds[r], probas[r] if probas is not None else None)
                  for r in range(repeats)]
    if probas is not None:
        mean_p = probas.mean(axis=0)
        pred = classes[np.argmax(mean_p, axis=1)]
    else:
        mean_p, pred = None, preds.mean(axis=0)
    return {"pred": pred, "proba": mean_p, "split_metrics": split_metrics,
            "metrics": {key: float(np.nanmean([m[key] for m in per_repeat]))
                        for key in per_repeat[0]},
            "best_params": params, "inner_scores": inner_scores, "tests": tests,
            "preds": preds, "probas": probas, "classes": classes}


def select_nested(fits: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Choose a source inside every outer split by its inner-CV score, keep its predictions.

    The choice never sees the split's test patients (the inner score comes from the training
    patients only), so the result is an honest estimate of "pick the strategy by its
    downstream value". Every fit must come from the same splits.

    Returns:
        A fit-like dict (``pred``, ``proba``) plus ``chosen``: source -> how often it won.
    """
    names = list(fits)
    first = fits[names[0]]
    preds = np.full_like(first["preds"], np.nan)
    probas = None if first["probas"] is None else np.zeros_like(first["probas"])
    chosen: dict[str, int] = {}
    for j, (r, te) in enumerate(first["tests"]):
        scores = [fits[n]["inner_scores"][j] for n in names]
        best = names[int(np.nanargmax(scores))] if np.isfinite(scores).any() else names[0]
        chosen[best] = chosen.get(best, 0) + 1
        preds[r, te] = fits[best]["preds"][r, te]
        if probas is not None:
            probas[r][te] = fits[best]["probas"][r][te]
    if probas is not None:
        mean_p = probas.mean(axis=0)
        pred = first["classes"][np.argmax(mean_p, axis=1)]
    else:
        mean_p, pred = None, preds.mean(axis=0)
    return {"pred": pred, "proba": mean_p, "chosen": dict(sorted(chosen.items()))}


def bootstrap(kind: str, y: np.ndarray, groups: np.ndarray, result: dict[str, Any], *,
              other: dict[str, Any] | None = None, n_boot: int = 500, seed: int = 0
              ) -> dict[str, dict[str, float]]:
    """Patient-bootstrap 95 % intervals of each metric (of ``result - other`` when given)."""
    pats = np.unique(groups)
    rows = {p: np.flatnonzero(groups == p) for p in pats}
    rng = np.random.default_rng(seed)

    def value(res: dict[str, Any], idx: np.ndarray) -> dict[str, float]:
        return metrics(kind, y[idx], res["pred"][idx],
                       res["proba"][idx] if res["proba"] is not None else None)

    full = np.arange(len(y))
    point = value(result, full)
    if other is not None:
        base = value(other, full)
        point = {k: point[k] - base[k] for k in point}
    reps: dict[str, list[float]] = {k: [] for k in point}
    for _ in range(n_boot):
        idx = np.concatenate([rows[p] for p in rng.choice(pats, len(pats))])
        v = value(result, idx)
        if other is not None:
            b = value(other, idx)
            v = {k: v[k] - b[k] for k in v}
        for k in reps:
            reps[k].append(v[k])
    out = {}
    for k, vals in reps.items():
        a = np.asarray(vals, dtype=np.float64)
        a = a[np.isfinite(a)]
        lo, hi = (np.quantile(a, [0.025, 0.975]) if len(a) else (math.nan, math.nan))
        out[k] = {"mean": point[k], "lo": float(lo), "hi": float(hi), "n_patients": len(pats)}
    return out
