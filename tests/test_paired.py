"""Paired statistics on constructed data with known answers, kernels and a collected study."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from confseg.metrics.paired import (
    holm,
    mean_interval,
    paired_difference,
    patient_draws,
    rank_biserial,
)
from confseg.runs import FINISHED, StudyFolder
from confseg.study import StudySpec, collect

from conftest import write_tiny_dataset

PATIENTS = [f"p{i}" for i in range(12)]


def test_better_on_every_patient_gives_a_positive_interval_excluding_zero():
    rng = np.random.default_rng(0)
    a = {p: float(v) for p, v in zip(PATIENTS, rng.uniform(0.5, 0.8, len(PATIENTS)),
                                     strict=True)}
    b = {p: v + 0.05 + 0.01 * i for i, (p, v) in enumerate(a.items())}
    d = paired_difference(b, a, n_boot=500)
    assert d["mean"] == pytest.approx(0.05 + 0.01 * 5.5)
    assert 0 < d["lo"] <= d["mean"] <= d["hi"]
    assert d["effect_size"] == 1.0  # every difference positive
    assert d["wilcoxon_p"] == pytest.approx(2 / 2 ** 12)  # exact two-sided, 12 pairs
    assert paired_difference(a, b, n_boot=500)["hi"] < 0


def test_identical_methods_get_p_one_and_a_zero_interval():
    a = {p: 0.1 * i for i, p in enumerate(PATIENTS)}
    d = paired_difference(a, dict(a))
    assert d["wilcoxon_p"] == 1.0 and d["mean"] == d["lo"] == d["hi"] == 0.0
    assert math.isnan(d["effect_size"])


def test_holm_known_values_and_nan_passthrough():
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.5, math.nan, 0.01]) == pytest.approx([0.5, math.nan, 0.02], nan_ok=True)
    assert holm([0.9, 0.8]) == [1.0, 1.0]  # 2 x 0.8 capped at 1; monotone after it
    assert holm([]) == []


def test_rank_biserial_and_shared_draws():
    assert rank_biserial([1, 2, -3]) == pytest.approx((3 - 3) / 6)
    assert rank_biserial([0.2, 0.1]) == 1.0 and rank_biserial([-1, -2]) == -1.0
    assert np.array_equal(patient_draws(5, n_boot=7, seed=3), patient_draws(5, n_boot=7, seed=3))
    one = mean_interval({"p": 0.4})
    assert one["lo"] == one["hi"] == one["mean"] == 0.4 and one["n_patients"] == 1


def _fake_cell(folder: StudyFolder, strategy: str, fold: int, seed: int, rows: list[dict]):
    from confseg.study.spec import slug

    run = folder.cell(slug(strategy), fold, seed)
    run.root.mkdir(parents=True)
    cols = list(rows[0])
    lines = [",".join(cols)] + [",".join(str(r[c]) for c in cols) for r in rows]
    run.per_case_path().write_text("\n".join(lines) + "\n")
    run.update_status(status=FINISHED, cell_seconds=1.0)


def test_collect_on_constructed_cells_known_answers(tmp_path):
    ds = write_tiny_dataset(tmp_path / "ds", patients=6, per_patient=1, size=(32, 32),
                            classes=("a",))
    spec = StudySpec(data=str(ds), strategies=("threshold:0", "soft", "threshold:0.5"), k=2,
                     seeds=2, base={"model": "unet-resnet18"}, n_boot=200)
    folder = StudyFolder(tmp_path / "st")
    folder.root.mkdir()
    folder.write_spec(spec.to_dict())
    rng = np.random.default_rng(1)
    base = {f"p{i}": float(rng.uniform(0.4, 0.7)) for i in range(6)}
    for seed in range(2):
        for fold in range(2):
            pats = [f"p{i}" for i in range(6) if i % 2 == fold]
            for strategy, shift in (("threshold:0", 0.0), ("soft", 0.1), ("threshold:0.5", 0.0)):
                rows = [{"id": f"{p}_0", "patient": p, "class": "a",
                         "dice@any": base[p] + shift + 0.01 * seed,
                         "dice@0.6": base[p] + shift, "qubiq": base[p]} for p in pats]
                _fake_cell(folder, strategy, fold, seed, rows)
    summary = collect(folder, spec, examples=0)
    assert summary["finished_cells"] == 12 and summary["metrics"] == ["qubiq", "dice@any",
                                                                     "dice@0.6"]
    # seeds averaged within a patient: dice@any of threshold:0 is base + 0.005
    assert summary["table"]["threshold:0"]["a"]["dice@any"]["mean"] == pytest.approx(
        np.mean(list(base.values())) + 0.005)
    paired = json.loads(folder.paired_path.read_text())
    assert paired["references"] == ["threshold:0", "threshold:0.5"]
    soft = paired["comparisons"]["threshold:0"]["soft"]["a"]["dice@0.6"]
    assert soft["mean"] == pytest.approx(0.1) and soft["lo"] > 0 and soft["n_patients"] == 6
    same = paired["comparisons"]["threshold:0"]["threshold:0.5"]["a"]["dice@0.6"]
    assert same["wilcoxon_p"] == 1.0 and same["p_holm"] == 1.0 and same["mean"] == 0.0
    assert soft["p_holm"] == pytest.approx(min(1.0, 2 * soft["wilcoxon_p"]))  # Holm over 2
    best = summary["best"]["a"]["dice@0.6"]
    assert best["strategy"] == "soft" and best["distinguishable"]
    tie = summary["best"]["a"]["qubiq"]
    assert not tie["distinguishable"] and "not distinguishable" in tie["sentence"]
