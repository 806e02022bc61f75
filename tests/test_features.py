import math
import subprocess
import sys
import warnings

import numpy as np
import pytest

from confseg.downstream import (
    AGGREGATE_DOCS,
    FEATURE_DOCS,
    feature_doc,
    frame_features,
    patient_day_features,
    raw_image_features,
    video_features,
)

H, W = 128, 160
LUS = ["pleural_line", "b_line", "a_line"]


@pytest.fixture(autouse=True)
def _warnings_are_errors():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


def probs(classes=LUS, **masks):
    """(K, H, W) probabilities: 0.9 on each named mask, 0.1 elsewhere."""
    p = np.full((len(classes), H, W), 0.1, dtype=np.float32)
    for name, m in masks.items():
        p[classes.index(name)][m] = 0.9
    return p


def empty():
    return np.zeros((H, W), dtype=bool)


def bars(cols=(30, 80, 130), width=5, rows=(40, 121)):
    m = empty()
    for c in cols:
        m[rows[0]:rows[1], c:c + width] = True
    return m


def pleura(row=30, thick=3, c0=20, c1=141, gaps=((50, 60), (100, 110))):
    m = empty()
    m[row:row + thick, c0:c1] = True
    for g0, g1 in gaps:
        m[:, g0:g1] = False
    return m


# --- B-lines ------------------------------------------------------------------------------


def test_three_vertical_bars():
    f = frame_features(probs(b_line=bars()), LUS)
    assert f["b_line.count"] == 3
    assert f["b_line.width_mean"] == pytest.approx(5 / W)
    assert f["b_line.width_max"] == pytest.approx(5 / W)
    assert f["b_line.coverage"] == pytest.approx(15 / W)
    assert f["b_line.area"] == pytest.approx(3 * 5 * 81 / (H * W))
    assert f["b_line.max_prob"] == pytest.approx(0.9)
    # no pleural line drawn: depth is the bars' height
    assert f["b_line.depth"] == pytest.approx(81 / H)


def test_b_line_depth_from_pleura_and_coverage_of_sector():
    image = np.zeros((H, W), dtype=np.uint8)
    image[:, 20:140] = 100  # 120 content columns
    f = frame_features(probs(b_line=bars(), pleural_line=pleura(gaps=())), LUS, image=image)
    # pleura's mean row 31, bars' lowest row 120
    assert f["b_line.depth"] == pytest.approx((120 - 31) / H)
    assert f["b_line.coverage"] == pytest.approx(15 / 120)
    black = frame_features(probs(b_line=bars()), LUS, image=np.zeros((H, W)))
    assert black["b_line.coverage"] == pytest.approx(15 / W)  # a black frame: every column


def test_specks_and_horizontal_blobs_are_not_b_lines():
    m = bars()
    m[5:9, 5] = True  # 4 px, vertical: kept at the default size (4 px in this frame) ...
    m[10:12, 10] = True  # 2 px: a speck
    m[100:103, 40:70] = True  # wide blob: not vertical
    assert frame_features(probs(b_line=m), LUS)["b_line.count"] == 4
    assert frame_features(probs(b_line=m), LUS, min_size=5)["b_line.count"] == 3
    assert frame_features(probs(b_line=m), LUS, min_size=100)["b_line.count"] == 3
    assert frame_features(probs(b_line=m), LUS, min_size=1000)["b_line.count"] == 0


def test_width_is_pixels_per_row_for_a_slanted_line():
    m = empty()
    for r in range(20, 120):
        m[r, 20 + r // 4:20 + r // 4 + 4] = True  # 4 px wide, drifting right
    f = frame_features(probs(b_line=m), LUS)
    assert f["b_line.count"] == 1
    assert f["b_line.width_mean"] == pytest.approx(4 / W)


# --- pleural line -------------------------------------------------------------------------


def test_pleural_line_with_two_gaps():
    f = frame_features(probs(pleural_line=pleura()), LUS)
    assert f["pleural_line.gaps"] == 2
    assert f["pleural_line.continuity"] == pytest.approx((121 - 20) / 121)
    assert f["pleural_line.length"] == pytest.approx(101 / W)
    assert f["pleural_line.thickness"] == pytest.approx(3 / H)
    assert f["pleural_line.irregularity"] == pytest.approx(0, abs=1e-9)
    assert "pleural_line.brightness_below" not in f


def test_continuous_and_curved_lines_are_regular():
    f = frame_features(probs(pleural_line=pleura(gaps=())), LUS)
    assert (f["pleural_line.gaps"], f["pleural_line.continuity"]) == (0, 1)
    m = empty()
    cols = np.arange(10, 150)
    centre = np.round(30 + 0.004 * (cols - 80) ** 2).astype(int)  # a parabola
    for c, r in zip(cols, centre, strict=True):
        m[r - 1:r + 2, c] = True
    assert frame_features(probs(pleural_line=m), LUS)["pleural_line.irregularity"] < 0.5 / H


def test_zigzag_line_is_irregular():
    m = empty()
    for c in range(20, 141):
        r = 30 + (6 if (c // 8) % 2 else 0)
        m[r:r + 3, c] = True
    f = frame_features(probs(pleural_line=m), LUS)
    assert f["pleural_line.irregularity"] > 2 / H
    assert f["pleural_line.gaps"] == 0


def test_brightness_below_pleura():
    image = np.full((H, W), 50, dtype=np.uint8)
    band = max(1, round(0.1 * H))
    image[33:33 + band, :] = 200  # right below rows 30..32
    f = frame_features(probs(pleural_line=pleura(gaps=())), LUS, image=image)
    assert f["pleural_line.brightness_below"] == pytest.approx(200 / 255)
    f = frame_features(probs(pleural_line=pleura(gaps=())), LUS, image=image / 255.0)
    assert f["pleural_line.brightness_below"] == pytest.approx(200 / 255)


# --- A-lines ------------------------------------------------------------------------------


def test_two_a_lines():
    m = empty()
    m[59:62, 20:140] = True
    m[99:102, 30:130] = True
    f = frame_features(probs(a_line=m), LUS)
    assert f["a_line.count"] == 2
    assert f["a_line.spacing"] == pytest.approx(40 / H)
    m[80:120, 70:73] = True  # a vertical blob is not an A-line
    assert frame_features(probs(a_line=m), LUS)["a_line.count"] == 2


def test_one_a_line_has_no_spacing():
    m = empty()
    m[59:62, 20:140] = True
    f = frame_features(probs(a_line=m), LUS)
    assert f["a_line.count"] == 1 and math.isnan(f["a_line.spacing"])


# --- empty, missing classes, bad input -----------------------------------------------------


def test_empty_masks():
    image = np.full((H, W), 80, dtype=np.uint8)
    f = frame_features(probs(), LUS, image=image)
    assert f["b_line.count"] == 0 and f["a_line.count"] == 0
    assert f["b_line.coverage"] == 0 and f["pleural_line.length"] == 0
    for k in ("b_line.width_mean", "b_line.width_max", "b_line.depth", "a_line.spacing",
              "pleural_line.continuity", "pleural_line.gaps", "pleural_line.thickness",
              "pleural_line.irregularity", "pleural_line.brightness_below"):
        assert math.isnan(f[k]), k
    assert f["b_line.area"] == 0 and f["b_line.max_prob"] == pytest.approx(0.1)


def test_missing_and_other_classes():
    classes = ["pleural_line", "b_line", "rib_shadow"]
    f = frame_features(probs(classes, b_line=bars()), classes)
    assert not any(k.startswith("a_line.") for k in f)
    assert {"rib_shadow.area", "rib_shadow.mean_prob", "rib_shadow.max_prob"} <= set(f)
    assert not any(k.startswith("rib_shadow.") and k.count(".") != 1 for k in f)
    assert f["b_line.count"] == 3
    only = frame_features(probs(["x"]), ["x"])
    assert set(only) == {"x.area", "x.mean_prob", "x.max_prob"}


def test_bad_inputs():
    with pytest.raises(ValueError, match="channels"):
        frame_features(probs(), ["a", "b"])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        frame_features(probs() + 1, LUS)
    with pytest.raises(ValueError, match="image"):
        frame_features(probs(), LUS, image=np.zeros((H, W + 1)))
    with pytest.raises(ValueError, match="must be"):
        frame_features(np.zeros((H, W)), LUS)


def test_all_values_are_floats():
    f = frame_features(probs(b_line=bars(), pleural_line=pleura()), LUS, image=np.ones((H, W)))
    assert all(type(v) is float for v in f.values())


# --- docs ---------------------------------------------------------------------------------


def test_every_emitted_key_is_documented():
    a = empty()
    a[59:62, 20:140] = True
    classes = [*LUS, "rib_shadow"]
    p = probs(classes, b_line=bars(), pleural_line=pleura(), a_line=a)
    keys = set(frame_features(p, classes, image=np.full((H, W), 9, np.uint8)))
    keys |= set(frame_features(probs(classes), classes))
    keys |= set(raw_image_features(np.full((H, W), 9, np.uint8)))
    undocumented = [k for k in keys if feature_doc(k) is None]
    assert not undocumented
    assert feature_doc("b_line.count") == FEATURE_DOCS["b_line.count"]
    assert feature_doc("rib_shadow.area") == FEATURE_DOCS["<cls>.area"]
    assert feature_doc("b_line.nonsense") is None
    assert all(v and "\n" not in v for v in {**FEATURE_DOCS, **AGGREGATE_DOCS}.values())


def test_docs_page_lists_every_feature():
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "docs" / "downstream.md").read_text()
    for name in {**FEATURE_DOCS, **AGGREGATE_DOCS}:
        assert f"`{name}`" in text, name


# --- raw image ----------------------------------------------------------------------------


def test_raw_image_features():
    img = np.zeros((90, 100), dtype=np.uint8)
    img[:30, 10:90] = 51  # 0.2
    img[30:60, 10:90] = 102  # 0.4
    img[60:, 10:90] = 255  # 1.0
    f = raw_image_features(img)
    assert set(f) == {k for k in FEATURE_DOCS if k.startswith("raw.")}
    assert f["raw.top_mean"] == pytest.approx(0.2)
    assert f["raw.mid_mean"] == pytest.approx(0.4)
    assert f["raw.bottom_mean"] == pytest.approx(1.0)
    assert f["raw.mean"] == pytest.approx(1.6 / 3)  # black bars beside the content left out
    assert f["raw.bright_frac"] == pytest.approx(1 / 3)
    assert f["raw.p50"] == pytest.approx(0.4)
    assert f["raw.grad_v"] == pytest.approx((0.2 + 0.6) / 89)
    flat = raw_image_features(np.zeros((4, 4)))
    assert flat["raw.mean"] == 0 and flat["raw.std"] == 0


# --- video and patient-day ----------------------------------------------------------------


def test_video_features():
    frames = [{"a": 1.0, "b": float("nan"), "c": float("nan")},
              {"a": 2.0, "b": 4.0, "c": float("nan")},
              {"a": 6.0, "b": float("nan"), "c": float("nan")}]
    v = video_features(iter(frames))
    assert v["n_frames"] == 3
    assert v["a.mean"] == pytest.approx(3) and v["a.max"] == 6
    assert v["a.std"] == pytest.approx(np.std([1, 2, 6]))
    assert v["a.p50"] == 2 and v["a.p10"] == pytest.approx(1.2) and v["a.p90"] == pytest.approx(5.2)
    assert v["b.mean"] == 4 and v["b.std"] == 0
    for stat in ("mean", "max", "std", "p10", "p50", "p90"):
        assert math.isnan(v[f"c.{stat}"])
    assert video_features([]) == {"n_frames": 0.0}
    partial = video_features([{"a": 1.0}, {"a": 3.0, "z": 5.0}])
    assert partial["z.mean"] == 5 and partial["a.mean"] == 2


def test_video_of_real_frames_is_documented():
    frames = [frame_features(probs(b_line=bars(cols=(30,) * (i + 1))), LUS) for i in range(3)]
    frames.append(frame_features(probs(), LUS))
    v = video_features(frames)
    assert v["b_line.count.mean"] == pytest.approx(0.75)
    assert v["b_line.width_mean.mean"] == pytest.approx(5 / W)  # NaN frame ignored
    assert math.isnan(v["a_line.spacing.max"])


def test_patient_day_features():
    videos = [("R1", {"x": 1.0, "y": float("nan")}),
              ("L1", {"x": 5.0, "y": 2.0}),
              ("R1", {"x": 3.0, "y": float("nan")})]
    p = patient_day_features(videos)
    assert p["n_views"] == 2
    assert p["view.R1.x"] == 2 and p["view.L1.x"] == 5  # R1's two videos averaged
    assert math.isnan(p["view.R1.y"])
    assert p["all.mean.x"] == pytest.approx(3.5) and p["all.max.x"] == 5
    assert p["all.mean.y"] == 2 and p["all.max.y"] == 2
    assert not any(k.startswith("view.R2.") for k in p)  # a missing view yields nothing
    assert set(p) == {"view.R1.x", "view.R1.y", "view.L1.x", "view.L1.y", "all.mean.x",
                      "all.mean.y", "all.max.x", "all.max.y", "n_views"}
    assert patient_day_features([]) == {"n_views": 0.0}
    with pytest.raises(ValueError, match="view name"):
        patient_day_features([("R.1", {"x": 1.0})])


def test_all_nan_across_views_is_quiet():
    p = patient_day_features([("R1", {"x": float("nan")}), ("L1", {"x": float("nan")})])
    assert math.isnan(p["all.mean.x"]) and math.isnan(p["all.max.x"])


# --- layering -----------------------------------------------------------------------------


def test_downstream_loads_no_torch():
    code = "import confseg.downstream.features, confseg.downstream, sys; " \
           "assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
