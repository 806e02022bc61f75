import math
from pathlib import Path

import numpy as np
import pytest

from confseg.data.schema import percent_to_unit
from confseg.metrics.calibration import adaptive_ece, calibration_stats, reliability_curve
from confseg.metrics.segmentation import (
    LEVELS,
    hd95,
    image_stats,
    metric_names,
    public_row,
    qubiq_score,
    reference_mask,
    summarize,
)

QUBIQ_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "qubiq-brain-growth"


def has_qubiq() -> bool:
    return (QUBIQ_DIR / "case01" / "seg01.png").is_file()


def row1(prob, conf, **kw):
    """Stats of a single-class image given as 1-D rows (shape (1, 1, N))."""
    p = np.asarray(prob, dtype=np.float32).reshape(1, 1, -1)
    c = np.asarray(conf, dtype=np.float32).reshape(1, 1, -1)
    return image_stats(p, c, classes=["x"], **kw)[0]


# --- Dice / IoU per level ---------------------------------------------------------------

PERCENT = np.array([0, 20, 40, 50, 60, 80, 100, 0], dtype=np.uint8)
PROB = [0.9, 0.9, 0.1, 0.9, 0.9, 0.2, 0.9, 0.5]  # pred = {0, 1, 3, 4, 6}; 0.5 is not > 0.5
# (tp, fp, fn) by hand for refs any={1..6}, 0.4={2..6}, 0.5={3..6}, 0.6={4,5,6}, 0.8={5,6}, 1={6}
EXPECTED = {"any": (4, 1, 2), "0.2": (4, 1, 2), "0.4": (3, 2, 2), "0.5": (3, 2, 1),
            "0.6": (2, 3, 1), "0.8": (1, 4, 1), "1.0": (1, 4, 0)}


def test_dice_iou_every_level_by_hand():
    r = row1(PROB, percent_to_unit(PERCENT))
    for lv, (tp, fp, fn) in EXPECTED.items():
        assert (r[f"_tp@{lv}"], r[f"_fp@{lv}"], r[f"_fn@{lv}"]) == (tp, fp, fn), lv
        assert r[f"dice@{lv}"] == pytest.approx(2 * tp / (2 * tp + fp + fn))
        assert r[f"iou@{lv}"] == pytest.approx(tp / (tp + fp + fn))
        assert r[f"empty_ref@{lv}"] == 0
    assert r["dice@any"] == pytest.approx(8 / 11)
    assert r["dice@0.6"] == pytest.approx(0.5)  # would be 2/7 if 60 % missed the 0.6 level
    assert r["n_pixels"] == 8


def test_percent_60_counts_at_level_0_6():
    c = percent_to_unit(np.array([60, 59, 100, 20], dtype=np.uint8))
    assert c.dtype == np.float32
    assert reference_mask(c, 0.6).tolist() == [True, False, True, False]
    assert reference_mask(c, 0.2).tolist() == [True, True, True, True]
    assert reference_mask(np.float64(3 / 5), 0.6)
    # 0.6 that lost its last bit on the way (10 x 0.6 summed / 10 = 0.5999999999999999)
    drifted = np.full(10, 0.6).sum() / 10
    assert drifted < 0.6 and reference_mask(drifted, 0.6)
    assert not reference_mask(np.float64(0.599), 0.6)
    assert reference_mask(c, 0.0).tolist() == [True, True, True, True]
    assert not reference_mask(np.float32(0.0), 0.0)


def test_empty_cases():
    both = row1([0.1, 0.2, 0.0], [0, 0, 0])
    assert both["dice@any"] == 1.0 and both["iou@any"] == 1.0 and both["dice@0.6"] == 1.0
    assert both["empty_ref@any"] == 1 and both["empty_ref@1.0"] == 1
    assert math.isnan(both["hd95"])
    fp_only = row1([0.9, 0.2, 0.0], [0, 0, 0])
    assert fp_only["dice@any"] == 0.0 and fp_only["empty_ref@any"] == 1
    miss = row1([0.1, 0.2, 0.0], [0.6, 0, 0])
    assert miss["dice@any"] == 0.0 and miss["empty_ref@any"] == 0
    assert miss["dice@0.8"] == 1.0 and miss["empty_ref@0.8"] == 1
    assert math.isnan(miss["hd95"])
    # the reducer can leave empty references out
    s = summarize([both, miss])["x"]
    assert s["dice@any"] == pytest.approx(0.5)
    assert s["empty_ref@any"] == pytest.approx(0.5)
    assert summarize([both, miss], exclude_empty_ref=True)["x"]["dice@any"] == 0.0


def test_ignore_mask_removes_pixels_from_every_statistic():
    prob = np.zeros((1, 4, 4), np.float32)
    conf = np.zeros((1, 4, 4), np.float32)
    prob[0, :2, :2] = 0.9
    conf[0, :2, :2] = 1.0
    prob[0, 3, 3] = 1.0  # a false positive ...
    ignore = np.zeros((4, 4), bool)
    ignore[3, 3] = True  # ... that is ignored
    plain = image_stats(prob, conf, classes=["x"])[0]
    ign = image_stats(prob, conf, classes=["x"], ignore=ignore)[0]
    assert plain["dice@any"] == pytest.approx(8 / 9)
    assert ign["dice@any"] == 1.0 and ign["n_pixels"] == 15
    assert plain["brier"] == pytest.approx((4 * 0.01 + 1.0) / 16)
    assert ign["brier"] == pytest.approx(4 * 0.01 / 15)
    assert ign["_bin_count"].sum() == 15
    assert ign["hd95"] == 0.0 and plain["hd95"] > 0


# --- QUBIQ and soft Dice ----------------------------------------------------------------


def test_qubiq_by_hand():
    conf = [1.0, 0.5, 0.25, 0.0]
    rater = [1.0, 1.0, 0.0, 0.0]  # one rater's binary mask used as the prediction
    # t=0.1,0.2: ref {0,1,2} -> 4/5; t=0.3,0.4: ref {0,1} -> 1; t=0.5..0.9 (0.5 is not > 0.5):
    # ref {0} -> 2/3.  Mean over the nine thresholds:
    expected = (2 * 0.8 + 2 * 1.0 + 5 * 2 / 3) / 9
    assert row1(rater, conf)["qubiq"] == pytest.approx(expected)
    assert expected == pytest.approx(0.770370, abs=1e-6)
    # both sides strict: a perfect soft prediction scores 1, all-zero vs all-zero scores 1
    assert row1(conf, conf)["qubiq"] == pytest.approx(1.0)
    assert qubiq_score(np.zeros((1, 5)), np.zeros((1, 5)))[0] == 1.0


def test_qubiq_percent_levels_are_strict():
    # 20 % stored in float32 is slightly above 0.2 but must not count as "> 0.2"
    c = percent_to_unit(np.array([[20, 20, 0, 0]], dtype=np.uint8))
    p = np.array([[0.15, 0.15, 0.0, 0.0]])
    # t=0.1: both {0,1} -> 1; t>=0.2: both empty -> 1
    assert qubiq_score(p, c)[0] == pytest.approx(1.0)
    p2 = np.array([[0.25, 0.25, 0.0, 0.0]])  # above 0.2: at t=0.2 pred {0,1}, ref {} -> 0
    assert qubiq_score(p2, c)[0] == pytest.approx(8 / 9)


def test_soft_dice():
    r = row1([1.0, 0.5, 0.0], [0.5, 0.5, 0.0])
    assert r["soft_dice"] == pytest.approx(2 * (0.5 + 0.25) / (1.5 + 1.0))
    assert row1([0, 0], [0, 0])["soft_dice"] == 1.0


# --- calibration ------------------------------------------------------------------------


def test_ece_brier_nll_two_bins_by_hand():
    p = np.array([[0.2, 0.2, 0.8, 0.8]])
    c = np.array([[0.0, 1.0, 1.0, 1.0]])
    s = calibration_stats(p, c, n_bins=2)
    # bin 0: mean p 0.2, mean c 0.5 (half the pixels); bin 1: mean p 0.8, mean c 1.0
    assert s["ece"][0] == pytest.approx(0.5 * 0.3 + 0.5 * 0.2)
    assert s["bin_count"][0].tolist() == [2, 2]
    assert s["brier"][0] == pytest.approx((0.04 + 0.64 + 0.04 + 0.04) / 4)
    assert s["nll"][0] == pytest.approx((3 * -math.log(0.8) - math.log(0.2)) / 4)
    # soft target: c = 0.5, p = 0.5 -> NLL = log 2 (the entropy of c), Brier 0, ECE 0
    h = calibration_stats(np.array([[0.5]]), np.array([[0.5]]), n_bins=2)
    assert h["nll"][0] == pytest.approx(math.log(2))
    assert h["brier"][0] == 0.0 and h["ece"][0] == 0.0
    # clipping keeps the NLL finite for a confident wrong pixel
    assert math.isfinite(calibration_stats(np.array([[0.0]]), np.array([[1.0]]))["nll"][0])


def test_adaptive_ece_differs_from_equal_width():
    p = np.array([[0.1, 0.2, 0.3, 0.9]])
    c = np.array([[0.0, 0.0, 1.0, 1.0]])
    # equal mass: {0.1, 0.2} gap 0.15, {0.3, 0.9} gap 0.4 -> 0.275
    assert adaptive_ece(p, c, n_bins=2)[0] == pytest.approx(0.275)
    # equal width: {0.1, 0.2, 0.3} gap 0.2 - 1/3 (3/4 of pixels), {0.9} gap 0.1 -> 0.125
    assert calibration_stats(p, c, n_bins=2)["ece"][0] == pytest.approx(0.125)


def test_pooled_ece_and_reliability_curve():
    a = row1([0.2, 0.2], [0.0, 0.0], n_bins=2)  # bin 0: gap 0.2
    b = row1([0.2, 0.8, 0.8, 0.8], [1.0, 1.0, 1.0, 1.0], n_bins=2)  # gaps 0.8 and 0.2
    assert a["ece"] == pytest.approx(0.2)
    assert b["ece"] == pytest.approx((0.8 + 3 * 0.2) / 4)
    s = summarize([a, b])["x"]
    assert s["ece"] == pytest.approx((0.2 + 0.35) / 2)
    # pooled bins: bin 0 = {0.2 x3} with c {0, 0, 1}: |0.6 - 1| ; bin 1: |2.4 - 3|
    assert s["ece_pooled"] == pytest.approx((0.4 + 0.6) / 6)
    centers, mp, mc, n = reliability_curve([a, b], "x")
    assert centers.tolist() == [0.25, 0.75]
    assert n.tolist() == [3, 3]
    assert mp == pytest.approx([0.2, 0.8]) and mc == pytest.approx([1 / 3, 1.0])
    with pytest.raises(ValueError):
        reliability_curve([a], "nope")


# --- HD95 -------------------------------------------------------------------------------


def test_hd95_squares_offset_by_three():
    a = np.zeros((40, 40), bool)
    a[10:20, 10:20] = True
    b = np.roll(a, 3, axis=1)
    assert hd95(a, b) == pytest.approx(3.0)
    assert hd95(a, a) == 0.0
    assert math.isnan(hd95(a, np.zeros_like(a)))
    prob = np.stack([a]).astype(np.float32)
    conf = np.stack([b]).astype(np.float32) * 0.4
    assert image_stats(prob, conf, classes=["x"])[0]["hd95"] == pytest.approx(3.0)


def test_hd95_matches_monai():
    torch = pytest.importorskip("torch")
    monai_hd = pytest.importorskip("monai.metrics").compute_hausdorff_distance
    from scipy import ndimage

    rng = np.random.default_rng(3)
    for _ in range(5):
        a = ndimage.gaussian_filter(rng.random((48, 40)), 3) > 0.5
        b = ndimage.gaussian_filter(rng.random((48, 40)), 3) > 0.5
        a[0, :5] = True  # touch the image border
        ref = monai_hd(torch.from_numpy(a[None, None]), torch.from_numpy(b[None, None]),
                       include_background=True, percentile=95)
        assert hd95(a, b) == pytest.approx(float(ref), rel=1e-5)


# --- truth, several classes, reduction --------------------------------------------------


def test_truth_metrics():
    prob = np.array([[[0.9, 0.9, 0.1, 0.1]]], np.float32)
    conf = np.array([[[1.0, 0.4, 0.4, 0.0]]], np.float32)
    truth = np.array([[[1, 1, 0, 0]]], bool)
    r = image_stats(prob, conf, truth=truth, classes=["x"])[0]
    assert r["dice_truth"] == 1.0 and r["iou_truth"] == 1.0
    assert r["ref_dice_truth@any"] == pytest.approx(2 * 2 / (3 + 2))
    assert r["ref_dice_truth@0.6"] == pytest.approx(2 * 1 / (1 + 2))
    assert set(metric_names(truth=True)) <= set(r)
    assert summarize([r])["x"]["dice_truth_pooled"] == 1.0


def test_classes_are_vectorised_consistently():
    rng = np.random.default_rng(0)
    prob = rng.random((3, 16, 16)).astype(np.float32)
    conf = (rng.integers(0, 6, (3, 16, 16)) * 20 / 100).astype(np.float32)
    rows = image_stats(prob, conf, classes=["a", "b", "c"])
    for k, r in enumerate(rows):
        alone = image_stats(prob[k:k + 1], conf[k:k + 1], classes=[r["class"]])[0]
        for key in metric_names():
            assert r[key] == pytest.approx(alone[key], nan_ok=True), key
    with pytest.raises(ValueError):
        image_stats(prob, conf, classes=["a", "b"])
    with pytest.raises(ValueError):
        image_stats(prob, conf[:, :8], classes=["a", "b", "c"])
    with pytest.raises(ValueError, match="prob must lie in"):
        image_stats(prob * 4 - 2, conf, classes=["a", "b", "c"])  # logits, not probabilities
    with pytest.raises(ValueError, match="conf must lie in"):
        image_stats(prob, conf * 100, classes=["a", "b", "c"])  # percent, not a fraction
    bad = prob.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(ValueError):
        image_stats(bad, conf, classes=["a", "b", "c"])


def test_summarize_mean_vs_pooled_and_public_row():
    one = row1([0.9, 0.1, 0.1, 0.1, 0.1], [1, 0, 0, 0, 0])  # dice 1
    two = row1([0.9, 0.9, 0.9, 0.9, 0.1], [1, 0, 0, 0, 0])  # tp 1, fp 3 -> 2/5
    s = summarize([one, two])["x"]
    assert s["dice@any"] == pytest.approx(0.7)
    assert s["dice_pooled@any"] == pytest.approx(4 / 7)
    assert s["n_images"] == 2
    flat = public_row(one)
    assert not any(k.startswith("_") for k in flat)
    assert all(isinstance(v, (int, float, str)) for v in flat.values())
    assert [lv for lv, _ in LEVELS] == ["any", "0.2", "0.4", "0.5", "0.6", "0.8", "1.0"]


# --- real data ----------------------------------------------------------------------------


@pytest.mark.realdata
@pytest.mark.skipif(not has_qubiq(), reason="needs ../shared/data/qubiq-brain-growth")
def test_qubiq_one_rater_vs_seven_rater_fraction():
    from PIL import Image

    scores = []
    for case in sorted(QUBIQ_DIR.glob("case*")):
        masks = np.stack([np.asarray(Image.open(case / f"seg0{i}.png")) > 127
                          for i in range(1, 8)])
        frac = masks.mean(axis=0).astype(np.float32)
        rows = image_stats(masks.astype(np.float32), np.broadcast_to(frac, masks.shape),
                           classes=[f"r{i}" for i in range(7)])
        scores.append([r["qubiq"] for r in rows])
    s = np.array(scores)
    assert s.shape == (31, 7)
    # one rater's binary mask against the 7-rater fraction, mean over raters and cases
    assert s.mean() == pytest.approx(0.8793, abs=0.001)
    assert s.mean(axis=0).min() > 0.84 and s.mean(axis=0).max() < 0.9
