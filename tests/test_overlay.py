"""Tests of confidence overlays and the example figure (confseg.viz.overlay)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from confseg.data import load_dataset
from confseg.synth import generate
from confseg.viz.overlay import (
    DEFAULT_COLORS,
    class_colors,
    overlay_confidence,
    pick_items,
    save_example_figure,
)

from conftest import write_tiny_dataset


def test_zero_confidence_leaves_the_image_unchanged() -> None:
    img = np.arange(12, dtype=np.uint8).reshape(3, 4) * 20
    out = overlay_confidence(img, np.zeros((2, 3, 4), np.float32))
    assert out.shape == (3, 4, 3) and out.dtype == np.uint8
    assert np.array_equal(out, np.repeat(img[..., None], 3, axis=-1))


def test_opacity_follows_confidence_and_colour_per_class() -> None:
    img = np.full((1, 3), 100, np.uint8)
    conf = np.zeros((2, 1, 3), np.float32)
    conf[0, 0] = [0.2, 1.0, 0.0]
    conf[1, 0, 2] = 1.0
    out = overlay_confidence(img, conf, colors=[(255, 0, 0), (0, 0, 255)], alpha=0.5)
    # pixel 0: class 0 at 20 % -> a = 0.1 ; pixel 1: class 0 at 100 % -> a = 0.5
    assert out[0, 0].tolist() == [round(100 * 0.9 + 255 * 0.1), 90, 90]
    assert out[0, 1].tolist() == [178, 50, 50]
    assert out[0, 2].tolist() == [50, 50, 178]
    full = overlay_confidence(img, conf[:1], colors=[(255, 0, 0)], alpha=1.0)
    assert full[0, 1].tolist() == [255, 0, 0]


def test_inputs_float_rgb_and_single_class() -> None:
    img = np.full((4, 4, 3), 0.5, np.float32)
    out = overlay_confidence(img, np.ones((4, 4), np.float32), alpha=0.0)
    assert np.all(out == 128)
    assert class_colors(8)[6] == DEFAULT_COLORS[0]


@pytest.mark.parametrize(("conf", "alpha"), [(np.zeros((1, 3, 3)), 0.6),
                                             (np.full((1, 4, 4), 1.5), 0.6),
                                             (np.zeros((1, 4, 4)), 1.5)])
def test_bad_inputs_raise(conf: np.ndarray, alpha: float) -> None:
    with pytest.raises(ValueError):
        overlay_confidence(np.zeros((4, 4), np.uint8), conf, alpha=alpha)


def test_example_figure_from_synthetic_data(tmp_path: Path) -> None:
    ds = generate(tmp_path / "ds", patients=2, views=2, days=1, size=48, seed=1)
    out = save_example_figure(ds, tmp_path / "fig" / "example.png", n=3)
    with Image.open(out) as im:
        w, h = im.size
    assert w > 500 and h > 300  # four columns (image, overlay, truth, legend), three rows
    assert w > h
    assert [p.name for p in out.parent.iterdir()] == ["example.png"]  # no temp file left


def test_example_figure_without_truth(tmp_path: Path) -> None:
    root = write_tiny_dataset(tmp_path / "tiny", patients=2, per_patient=1)
    out = save_example_figure(root, tmp_path / "tiny.png", n=2)
    with Image.open(out) as im:
        assert im.size[0] > 300


def test_pick_items_spreads_over_blines(tmp_path: Path) -> None:
    ds = load_dataset(generate(tmp_path / "ds", patients=4, views=2, days=1, size=32, seed=2))
    picked = pick_items(ds, 3)
    counts = [it.extra["synth"]["b_lines"] for it in picked]
    assert len(picked) == 3 and counts == sorted(counts)
    assert counts[0] == min(it.extra["synth"]["b_lines"] for it in ds.items)
    assert counts[-1] == max(it.extra["synth"]["b_lines"] for it in ds.items)
