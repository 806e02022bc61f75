import math
import time

import numpy as np
import pytest

from confseg.metrics.bootstrap import bootstrap_ci, summarize_with_ci
from confseg.metrics.segmentation import image_stats


def make_rows(values_by_patient, metric="m", cls="x"):
    rows = []
    for pat, vals in values_by_patient.items():
        for i, v in enumerate(vals):
            rows.append({"class": cls, "patient": pat, "id": f"{pat}-{i}", metric: float(v)})
    return rows


def clustered_rows(rng, n_pat=30, frames=10, pat_sd=0.1, frame_sd=0.02, mean=0.7):
    effects = rng.normal(mean, pat_sd, n_pat)
    return make_rows({f"p{i}": effects[i] + rng.normal(0, frame_sd, frames)
                      for i in range(n_pat)})


def test_point_is_mean_of_images_and_interval_contains_it():
    rows = make_rows({"a": [0.2, 0.4], "b": [0.9], "c": [0.5, 0.5, 0.5]})
    point, lo, hi = bootstrap_ci(rows, stat="m", n_boot=500)
    assert point == pytest.approx(np.mean([0.2, 0.4, 0.9, 0.5, 0.5, 0.5]))
    assert lo < point < hi
    assert lo >= 0.2 and hi <= 0.9


def test_resamples_patients_not_frames():
    rng = np.random.default_rng(1)
    # one patient with 100 near-identical frames, nine patients with one frame each
    rows = make_rows({"big": 0.9 + rng.normal(0, 0.01, 100),
                      **{f"s{i}": [v] for i, v in enumerate(rng.uniform(0.3, 0.7, 9))}})
    point, lo, hi = bootstrap_ci(rows, stat="m", n_boot=2000)
    fpoint, flo, fhi = bootstrap_ci(rows, group_key="id", stat="m", n_boot=2000)
    assert point == pytest.approx(fpoint)
    # whether "big" is drawn dominates each replicate: the interval spans most of [0.5, 0.9]
    assert hi - lo > 3 * (fhi - flo)
    assert lo < 0.6 and hi > 0.88
    assert fhi - flo < 0.08


def test_callable_stat_uses_the_same_draws():
    rng = np.random.default_rng(2)
    rows = clustered_rows(rng, n_pat=8, frames=3)
    named = bootstrap_ci(rows, stat="m", n_boot=300, seed=5)
    func = bootstrap_ci(rows, stat=lambda rs: float(np.mean([r["m"] for r in rs])),
                        n_boot=300, seed=5)
    assert func == pytest.approx(named)


def test_seed_determinism():
    rows = clustered_rows(np.random.default_rng(3), n_pat=12, frames=4)
    a = bootstrap_ci(rows, stat="m", n_boot=400, seed=7)
    assert bootstrap_ci(rows, stat="m", n_boot=400, seed=7) == a
    assert bootstrap_ci(rows, stat="m", n_boot=400, seed=8) != a


def test_coverage_patient_vs_frame_bootstrap():
    rng = np.random.default_rng(4)
    cover_pat = cover_frame = 0
    n_sim = 150
    for _ in range(n_sim):
        rows = clustered_rows(rng, n_pat=25, frames=8, pat_sd=0.1, frame_sd=0.03)
        _, lo, hi = bootstrap_ci(rows, stat="m", n_boot=400, seed=int(rng.integers(1 << 30)))
        cover_pat += lo <= 0.7 <= hi
        _, lo, hi = bootstrap_ci(rows, group_key="id", stat="m", n_boot=400)
        cover_frame += lo <= 0.7 <= hi
    assert 0.87 <= cover_pat / n_sim <= 0.99
    assert cover_frame / n_sim < 0.7  # frames are not independent: far too narrow


def test_single_patient_and_nan_values():
    rows = make_rows({"only": [0.3, 0.5]})
    assert bootstrap_ci(rows, stat="m") == (0.4, 0.4, 0.4)
    out = summarize_with_ci(rows, ["m"], ["x"])
    assert out["x"]["m"] == {"mean": 0.4, "lo": 0.4, "hi": 0.4, "n_patients": 1, "n": 2}
    rows = make_rows({"a": [1.0, math.nan], "b": [3.0], "c": [math.nan]})
    res = summarize_with_ci(rows, ["m"], ["x"], n_boot=200)["x"]["m"]
    assert res["mean"] == pytest.approx(2.0)
    assert res["n_patients"] == 2 and res["n"] == 2
    assert 1.0 <= res["lo"] <= res["hi"] <= 3.0


def test_errors():
    rows = make_rows({"a": [1.0]}) + make_rows({"a": [2.0]}, cls="y")
    with pytest.raises(ValueError, match="several classes"):
        bootstrap_ci(rows, stat="m")
    with pytest.raises(ValueError, match="'site'"):
        bootstrap_ci(rows[:1], group_key="site", stat="m")


def _image_rows(rng, n_pat, frames):
    rows = []
    for p in range(n_pat):
        for f in range(frames):
            conf = np.zeros((2, 12, 12), np.float32)
            conf[:, 3:9, 3:9] = 0.6
            conf[:, 5:7, 5:7] = 1.0
            prob = np.clip(conf + rng.normal(0, 0.3, conf.shape), 0, 1).astype(np.float32)
            for r in image_stats(prob, conf, classes=["a", "b"]):
                r.update(patient=f"p{p}", id=f"p{p}-{f}")
                rows.append(r)
    return rows


def test_summarize_with_ci_on_image_stats_including_pooled():
    rows = _image_rows(np.random.default_rng(5), n_pat=6, frames=3)
    metrics = ["dice@any", "hd95", "ece", "dice_pooled@0.6", "ece_pooled", "brier_pooled"]
    out = summarize_with_ci(rows, metrics, ["a", "b"], n_boot=300)
    for cls in ("a", "b"):
        sel = [r for r in rows if r["class"] == cls]
        for m in metrics:
            res = out[cls][m]
            assert res["lo"] <= res["mean"] <= res["hi"], (cls, m)
            assert res["n_patients"] == 6
        assert out[cls]["dice@any"]["mean"] == pytest.approx(np.mean([r["dice@any"] for r in sel]))
        tp = sum(r["_tp@0.6"] for r in sel)
        fp = sum(r["_fp@0.6"] for r in sel)
        fn = sum(r["_fn@0.6"] for r in sel)
        assert out[cls]["dice_pooled@0.6"]["mean"] == pytest.approx(2 * tp / (2 * tp + fp + fn))
    # a pooled metric through bootstrap_ci equals the same draw through summarize_with_ci
    sel = [r for r in rows if r["class"] == "a"]
    p, lo, hi = bootstrap_ci(sel, stat="ece_pooled", n_boot=300)
    assert (p, lo, hi) == pytest.approx(
        tuple(out["a"]["ece_pooled"][k] for k in ("mean", "lo", "hi")))


def test_speed_300_rows_20_metrics():
    rng = np.random.default_rng(6)
    names = [f"m{i}" for i in range(20)]
    rows = [{"class": "x", "patient": f"p{i % 60}", **{m: float(rng.random()) for m in names}}
            for i in range(300)]
    t0 = time.perf_counter()
    out = summarize_with_ci(rows, names, ["x"], n_boot=1000)
    elapsed = time.perf_counter() - t0
    assert out["x"]["m0"]["n_patients"] == 60
    assert elapsed < 2.0  # typically ~0.05 s; generous for a loaded CI machine


def test_paired_difference_known_answer():

    from confseg.metrics.paired import paired_difference, per_patient_means

    a = {"p1": 0.9, "p2": 0.8, "p3": 0.7, "p4": 0.6}
    b = {"p1": 0.8, "p2": 0.7, "p3": 0.6, "p4": 0.5, "p5": 0.1}  # p5 unpaired: left out
    d = paired_difference(a, b, n_boot=200)
    assert d["mean"] == pytest.approx(0.1) and d["n_patients"] == 4
    assert d["lo"] == pytest.approx(0.1) and d["hi"] == pytest.approx(0.1)
    assert d["wilcoxon_p"] == pytest.approx(0.125)  # all four differences positive, exact test
    assert paired_difference(a, a)["wilcoxon_p"] == 1.0  # identical methods
    rows = [{"patient": "p1", "class": "c", "x": 1.0}, {"patient": "p1", "class": "c", "x": 3.0},
            {"patient": "p2", "class": "c", "x": float("nan")}, {"patient": "p2", "class": "d",
                                                                   "x": 5.0}]
    assert per_patient_means(rows, "x", cls="c") == {"p1": 2.0}
