"""Tests of the synthetic lung-ultrasound generator (confseg.synth)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage, stats

from confseg.data import load_dataset
from confseg.errors import ConfsegError
from confseg.io.images import read_percent_map
from confseg.synth import CLASSES, generate
from confseg.synth.clinical import (
    CLINICAL_COLUMNS,
    clinical_rows,
    oxygenation,
    readmission_probability,
    sample_course,
    sf_change,
)
from confseg.synth.video import read_frames, write_mp4

SMALL = {"patients": 3, "views": 2, "days": 2, "size": 64}


@pytest.fixture(scope="module")
def small_ds(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """3 patients x 2 views x 2 days at 64x64 with 3 raters."""
    return generate(tmp_path_factory.mktemp("synth") / "ds", seed=7, raters=3, **SMALL)


@pytest.fixture(scope="module")
def study_ds(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A larger set for statistics: 10 patients x 3 views x 2 days at 96x96."""
    return generate(tmp_path_factory.mktemp("synth") / "study", patients=10, views=3, days=2,
                    size=96, seed=3)


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file()}


def test_same_seed_gives_identical_files_and_other_seed_differs(tmp_path: Path,
                                                                small_ds: Path) -> None:
    again = generate(tmp_path / "again", seed=7, raters=3, **SMALL)
    a, b = _files(small_ds), _files(again)
    assert a.keys() == b.keys()
    pngs = [k for k in a if k.endswith(".png")]
    assert len(pngs) == 12 * (1 + 3 + 3 + 3 * 3)  # image, conf, truth, 3 raters x 3 classes
    assert all(a[k] == b[k] for k in pngs)
    assert a["clinical.csv"] == b["clinical.csv"]
    other = generate(tmp_path / "other", seed=8, **SMALL)
    differ = sum(a[k] != (other / k).read_bytes() for k in pngs if k.startswith("images/"))
    assert differ == 12


def test_more_patients_extend_a_smaller_dataset(tmp_path: Path) -> None:
    small = generate(tmp_path / "a", patients=1, views=1, days=2, size=32, seed=5)
    big = generate(tmp_path / "b", patients=2, views=2, days=2, size=32, seed=5)
    for rel in ("images/p001_v1_d1.png", "confidence/b_line/p001_v1_d0.png"):
        assert (small / rel).read_bytes() == (big / rel).read_bytes()


def test_dataset_loads_with_expected_items(small_ds: Path) -> None:
    ds = load_dataset(small_ds, validate=True)
    assert ds.classes == CLASSES
    assert len(ds.items) == 3 * 2 * 2
    assert ds.patients() == ["p001", "p002", "p003"]
    assert {it.view for it in ds.items} == {"R1", "L1"}
    assert {it.day for it in ds.items} == {0, 1}
    assert ds.item("p002_v2_d1").patient == "p002"
    assert ds.meta["generator"] == "confseg.synth"
    assert ds.meta["seed"] == 7
    assert ds.meta["params"]["patients"] == 3 and ds.meta["params"]["size"] == 64
    for it in ds.items:
        img = ds.read_image(it)
        assert img.shape == (64, 64) and img.dtype == np.uint8
        assert set(it.confidence) == set(it.truth) == set(CLASSES)
        assert 0 < int((img > 0).sum()) < img.size  # a field of view, black outside


def test_confidence_uses_only_scale_levels(small_ds: Path) -> None:
    ds = load_dataset(small_ds)
    seen: set[int] = set()
    for it in ds.items:
        for rel in it.confidence.values():
            seen |= set(np.unique(read_percent_map(ds.path(rel))).tolist())
    assert seen <= {0, 20, 40, 60, 80, 100}
    assert {0, 20, 100} <= seen


def _precision_recall(ds, cls: str, ts: list[float]) -> tuple[np.ndarray, np.ndarray]:
    tp, marked, total = np.zeros(len(ts)), np.zeros(len(ts)), 0
    for it in ds.items:
        conf, truth = ds.read_confidence(it, cls), ds.read_truth(it, cls)
        total += int(truth.sum())
        for i, t in enumerate(ts):
            m = (conf > 0) & (conf >= t - 1e-6)
            marked[i] += m.sum()
            tp[i] += (m & truth).sum()
    return tp / np.maximum(marked, 1), tp / max(total, 1)


@pytest.mark.parametrize("cls", CLASSES)
def test_precision_rises_and_recall_falls_with_threshold(study_ds: Path, cls: str) -> None:
    ds = load_dataset(study_ds, validate=False)
    prec, rec = _precision_recall(ds, cls, [0.0, 0.2, 0.4, 0.6, 0.8, 1.0])
    assert prec[0] < 0.85  # the conventional label (every marked pixel) is noisy
    assert prec[3] > prec[0] + 0.15  # thresholding at 0.6 removes mostly wrong pixels
    assert prec[5] > 0.95
    assert all(prec[i + 1] >= prec[i] - 0.02 for i in range(5))
    assert rec[0] > 0.6 and rec[5] < rec[3] < rec[0]
    assert np.all(np.diff(rec) <= 1e-12)


def test_blines_follow_lung_water(study_ds: Path) -> None:
    ds = load_dataset(study_ds, validate=False)
    water, drawn, found = [], [], []
    for it in ds.items:
        water.append(it.extra["synth"]["lung_water"])
        drawn.append(it.extra["synth"]["b_lines"])
        found.append(ndimage.label(ds.read_truth(it, "b_line"))[1])
    assert stats.spearmanr(water, drawn).statistic > 0.45
    assert stats.spearmanr(water, found).statistic > 0.45
    w, n = np.asarray(water), np.asarray(found)
    wet, dry = n[w > np.median(w)].mean(), n[w <= np.median(w)].mean()
    assert wet > 2.0 * dry + 0.2
    assert all((f == 0) == (d == 0) for f, d in zip(found, drawn, strict=True))
    rows = ds.read_clinical()
    assert sum(int(r["b_lines"]) for r in rows) == sum(drawn)


def test_clinical_csv_columns_and_sf_change(small_ds: Path) -> None:
    with (small_ds / "clinical.csv").open(newline="") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
        assert reader.fieldnames == CLINICAL_COLUMNS
    assert len(rows) == 3 * 2
    by_patient: dict[str, list[dict[str, str]]] = {}
    for r in rows:
        by_patient.setdefault(r["patient"], []).append(r)
        spo2, fio2, sf = int(r["spo2"]), float(r["fio2"]), float(r["sf_ratio"])
        assert spo2 <= 100 and 0.21 <= fio2 <= 1.0
        assert sf == pytest.approx(spo2 / fio2, abs=0.06)
        assert 0.0 <= float(r["lung_water"]) <= 1.0
    for prs in by_patient.values():
        prs.sort(key=lambda r: int(r["day"]))
        assert prs[0]["sf_change"] == ""
        assert len({r["readmit_30d"] for r in prs}) == 1 and prs[0]["readmit_30d"] in "01"
        delta = float(prs[1]["sf_ratio"]) - float(prs[0]["sf_ratio"])
        want = "same" if abs(delta) <= 15 else ("up" if delta > 0 else "down")
        assert prs[1]["sf_change"] == want


def test_clinical_model_relations() -> None:
    rng = np.random.default_rng(0)
    assert sf_change(None, 300.0) == ""
    assert sf_change(300.0, 315.0) == "same"
    assert sf_change(300.0, 315.1) == "up"
    assert sf_change(300.0, 284.0) == "down"
    healthy = [oxygenation(0.0, rng) for _ in range(200)]
    severe = [oxygenation(1.0, rng) for _ in range(200)]
    assert all(f == 0.21 for _, f, _ in healthy[:50]) or np.mean([f for _, f, _ in healthy]) < 0.23
    assert 420 < np.median([sf for *_, sf in healthy]) < 480
    assert 110 < np.median([sf for *_, sf in severe]) < 190
    assert all(f > 0.21 for _, f, _ in severe)
    assert all(s <= 100 for s, _, _ in healthy + severe)
    assert readmission_probability((0.8, 0.9)) > readmission_probability((0.3, 0.1))
    courses = [sample_course(rng, f"p{i}", 3, "mixed") for i in range(300)]
    assert {c.probe for c in courses} == {"convex", "linear"}
    rows = clinical_rows(courses, rng)
    lw = [r["lung_water"] for r in rows]
    assert stats.spearmanr(lw, [r["sf_ratio"] for r in rows]).statistic < -0.8
    last = {r["patient"]: r for r in rows if r["day"] == 2}
    risk = [readmission_probability(c.lung_water) for c in courses]
    readmit = [last[c.patient]["readmit_30d"] for c in courses]
    assert stats.pointbiserialr(readmit, risk).statistic > 0.2


def test_raters_have_individual_bias(small_ds: Path) -> None:
    ds = load_dataset(small_ds)
    assert ds.raters() == ["r1", "r2", "r3"]
    assert ds.meta["raters"]["r1"]["style"] == "generous"
    area = {r: 0.0 for r in ds.raters()}
    for it in ds.items:
        for r in area:
            for c in ds.classes:
                m = ds.read_rater(it, r, c)
                assert set(np.unique(m).tolist()) <= {0.0, 1.0}
                area[r] += float(m.sum())
    assert area["r1"] > area["r3"] > area["r2"] > 0  # generous > noisy > strict


def test_class_subset_progress_and_probe(tmp_path: Path) -> None:
    calls: list[tuple[int, int]] = []
    out = generate(tmp_path / "bl", patients=2, views=1, days=1, size=48, classes=("b_line",),
                   probe="linear", progress=lambda d, t: calls.append((d, t)))
    ds = load_dataset(out)
    assert ds.classes == ("b_line",)
    assert all(set(it.confidence) == {"b_line"} for it in ds.items)
    assert all(it.extra["synth"]["probe"] == "linear" for it in ds.items)
    assert calls == [(1, 2), (2, 2)]


@pytest.mark.parametrize("kwargs", [{"patients": 0}, {"views": 13}, {"days": 0}, {"size": 8},
                                    {"probe": "phased"}, {"classes": ("lung",)},
                                    {"raters": -1}])
def test_bad_arguments_raise_confseg_error(tmp_path: Path, kwargs: dict) -> None:
    args = {**SMALL, **kwargs}
    with pytest.raises(ConfsegError):
        generate(tmp_path / "x", **args)
    assert not (tmp_path / "x").exists()


def test_existing_folder_needs_overwrite(tmp_path: Path) -> None:
    out = tmp_path / "ds"
    generate(out, patients=1, views=1, days=1, size=32)
    with pytest.raises(ConfsegError, match="overwrite"):
        generate(out, patients=1, views=1, days=1, size=32)
    generate(out, patients=2, views=1, days=1, size=32, overwrite=True)
    assert len(load_dataset(out).items) == 2


def test_videos_decode_with_expected_frames(tmp_path: Path) -> None:
    out = generate(tmp_path / "v", patients=1, views=2, days=1, size=64, videos=True)
    ds = load_dataset(out)
    for it in ds.items:
        assert it.video == f"videos/{it.id}.mp4"
        frames = read_frames(ds.path(it.video))
        assert len(frames) == 16
        assert frames[0].shape == (64, 64)
        # the clip shows the same frame as the still image (up to compression and motion)
        still = ds.read_image(it).astype(np.float32)
        assert np.abs(frames[0].astype(np.float32) - still).mean() < 12
        assert np.abs(frames[4].astype(np.float32) - frames[12].astype(np.float32)).mean() > 0.5


def test_write_mp4_pads_odd_sizes(tmp_path: Path) -> None:
    frames = [np.full((33, 35), 10 * i, np.uint8) for i in range(4)]
    write_mp4(tmp_path / "odd.mp4", frames)
    back = read_frames(tmp_path / "odd.mp4")
    assert len(back) == 4 and back[0].shape == (34, 36)
    assert abs(float(back[3][:33, :35].mean()) - 30) < 3
