import numpy as np
import pytest

from confseg.errors import StrategyError
from confseg.targets import (
    IgnoreBand,
    RaterSample,
    Soft,
    Threshold,
    Weighted,
    parse_strategy,
)

# Stored percent levels as the loader gives them (float32 of percent / 100).
C = (np.array([[0, 20, 40], [60, 80, 100]], np.uint8).astype(np.float32) / 100)


def test_threshold_conventional_keeps_every_marked_pixel():
    t, w = Threshold(t=0.0).apply(C)
    np.testing.assert_array_equal(t, [[0, 1, 1], [1, 1, 1]])
    np.testing.assert_array_equal(w, np.ones((2, 3)))


def test_threshold_exactly_at_level_counts():
    # 60 % stored in float32 is 0.6000000238 or 0.59999996: either way c == t is foreground.
    t, _ = Threshold(t=0.6).apply(C)
    np.testing.assert_array_equal(t, [[0, 0, 0], [1, 1, 1]])
    t, _ = parse_strategy("threshold:0.29").apply(np.float32([0.29, 0.28]))
    np.testing.assert_array_equal(t, [1, 0])


def test_threshold_one_keeps_only_certain():
    t, _ = Threshold(t=1.0).apply(C)
    np.testing.assert_array_equal(t, [[0, 0, 0], [0, 0, 1]])


def test_empty_map_gives_empty_target_full_weight():
    z = np.zeros((4, 4), np.float32)
    for s in ("threshold:0", "threshold:0.6", "soft", "ignore:0.2-0.6", "weighted"):
        t, w = parse_strategy(s).apply(z)
        assert t.sum() == 0, s
        np.testing.assert_array_equal(w, np.ones((4, 4)), err_msg=s)


def test_soft_is_identity():
    t, w = Soft().apply(C)
    np.testing.assert_allclose(t, C)
    assert w.min() == 1


def test_ignore_band():
    t, w = IgnoreBand(lo=0.4, hi=0.8).apply(C)
    # 0 and 20 -> background (weight 1), 40 and 60 -> ignored, 80 and 100 -> foreground.
    np.testing.assert_array_equal(t, [[0, 0, 0], [0, 1, 1]])
    np.testing.assert_array_equal(w, [[1, 1, 0], [0, 1, 1]])


def test_ignore_band_low_zero_ignores_all_marked_below_hi_but_not_unmarked():
    t, w = parse_strategy("ignore:0-0.6").apply(C)
    np.testing.assert_array_equal(t, [[0, 0, 0], [1, 1, 1]])
    np.testing.assert_array_equal(w, [[1, 0, 0], [1, 1, 1]])


def test_weighted():
    t, w = Weighted().apply(C)
    np.testing.assert_array_equal(t, [[0, 1, 1], [1, 1, 1]])
    np.testing.assert_allclose(w, [[1, 0.2, 0.4], [0.6, 0.8, 1.0]], atol=1e-6)


def test_rater_random_and_fixed():
    raters = np.stack([np.zeros((2, 2)), np.ones((2, 2))]).astype(np.float32)
    rng = np.random.default_rng(0)
    seen = {float(RaterSample().apply(C[:, :2], raters=raters, rng=rng)[0].mean())
            for _ in range(20)}
    assert seen == {0.0, 1.0}
    t, _ = RaterSample(name="r2").apply(C[:, :2], raters=raters, rater_names=["r1", "r2"])
    assert t.mean() == 1.0
    with pytest.raises(StrategyError, match="needs rater masks"):
        RaterSample().apply(C, raters=None)


@pytest.mark.parametrize("text,expected", [
    ("threshold:0.6", Threshold(t=0.6)),
    ("threshold:60", Threshold(t=0.6)),
    ("THRESHOLD:0", Threshold(t=0.0)),
    ("conventional", Threshold(t=0.0)),
    ("soft", Soft()),
    ("ignore:0.2-0.6", IgnoreBand(lo=0.2, hi=0.6)),
    ("ignore:20-60", IgnoreBand(lo=0.2, hi=0.6)),
    ("weighted", Weighted()),
    ("rater", RaterSample()),
    ("rater:r01", RaterSample(name="r01")),
])
def test_parse_and_spec_round_trip(text, expected):
    s = parse_strategy(text)
    assert s == expected
    assert parse_strategy(s.spec) == s


@pytest.mark.parametrize("text,msg", [
    ("thresh:0.6", "unknown label strategy 'thresh:0.6'"),
    ("threshold:", "unknown label strategy"),
    ("threshold:150", "above 100"),
    ("ignore:0.8-0.2", "low end is above high end"),
    ("ignore:0-0", "high end above 0"),
    ("", "unknown label strategy"),
])
def test_bad_strategy_strings(text, msg):
    with pytest.raises(StrategyError, match=msg):
        parse_strategy(text)


def test_strategies_are_frozen_and_keyword_only():
    with pytest.raises(TypeError):
        Threshold(0.5)  # type: ignore[misc]
    s = Threshold(t=0.5)
    with pytest.raises(AttributeError):
        s.t = 0.7  # type: ignore[misc]
