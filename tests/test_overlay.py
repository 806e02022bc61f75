"""Tests of confidence overlays and the example figure (confseg.viz.overlay)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from confseg.data import DatasetWriter, load_dataset
from confseg.data.schema import ConfidenceLevel
from confseg.preprocess import to_display
from confseg.synth import generate
from confseg.synth.figure import by_blines, save_synth_example, synth_caption
from confseg.viz import overlay as overlay_module
from confseg.viz.overlay import (
    DEFAULT_COLORS,
    class_colors,
    level_shares,
    overlay_confidence,
    pick_items,
    save_example_figure,
)
from confseg.viz.palette import PALETTE, class_colours, hex_colour

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


def test_pick_items_spreads_over_a_sort_key(tmp_path: Path) -> None:
    ds = load_dataset(generate(tmp_path / "ds", patients=4, views=2, days=1, size=32, seed=2))
    assert [it.id for it in pick_items(ds, 2)] == [ds.items[0].id, ds.items[-1].id]
    picked = pick_items(ds, 3, key=by_blines)
    counts = [it.extra["synth"]["b_lines"] for it in picked]
    assert len(picked) == 3 and counts == sorted(counts)
    assert counts[0] == min(it.extra["synth"]["b_lines"] for it in ds.items)
    assert counts[-1] == max(it.extra["synth"]["b_lines"] for it in ds.items)


def test_synth_example_figure_and_caption(tmp_path: Path) -> None:
    root = generate(tmp_path / "ds", patients=2, views=2, days=1, size=32, seed=1)
    it = load_dataset(root).items[0]
    meta = it.extra["synth"]
    assert synth_caption(it) == (f"{it.id}  (lung water {meta['lung_water']:.2f}, "
                                 f"{meta['b_lines']} B-lines)")
    out = save_synth_example(root, tmp_path / "synth.png", n=2)
    with Image.open(out) as im:
        assert im.size[0] > 500


def test_generic_figure_takes_a_caption(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = write_tiny_dataset(tmp_path / "tiny", patients=2, per_patient=1)
    titles: list[str] = []
    real = overlay_module.plt.Axes.set_title

    def spy(ax: object, label: str, *a: object, **kw: object) -> object:
        titles.append(label)
        return real(ax, label, *a, **kw)

    monkeypatch.setattr(overlay_module.plt.Axes, "set_title", spy)
    save_example_figure(root, tmp_path / "a.png", n=2)
    assert "p0_0" in titles and not any("B-lines" in t for t in titles)
    titles.clear()
    save_example_figure(root, tmp_path / "b.png", item_ids=["p1_0"],
                        caption=lambda item: f"case {item.patient}")
    assert "case p1" in titles


def test_level_shares() -> None:
    conf = np.zeros((2, 2, 5), np.float32)
    conf[0, 0, :4] = [0.14, 0.14, 0.43, 1.0]
    shares = level_shares(conf, [14, 29, 43, 100])
    assert shares[0].tolist() == [50.0, 0.0, 25.0, 25.0]
    assert np.isnan(shares[1]).all()  # nothing marked


QUBIQ = tuple(ConfidenceLevel(value=v, name=f"{k} of 7")
              for k, v in enumerate((14, 29, 43, 57, 71, 86, 100), 1))


def test_legend_uses_the_dataset_scale(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "qubiq"
    conf = np.zeros((16, 20), np.float32)
    conf[2:6, 2:6] = 0.43
    conf[8:12, 8:12] = 0.86
    with DatasetWriter(root, name="q", classes=["a"], scale=QUBIQ) as w:
        w.add(item_id="i", patient="p", image=np.full((16, 20), 90, np.uint8),
              confidence={"a": conf})
    seen: list[tuple[list[int], np.ndarray]] = []

    def spy(c: np.ndarray, levels: list[int]) -> np.ndarray:
        out = level_shares(c, levels)
        seen.append((list(levels), out))
        return out

    monkeypatch.setattr(overlay_module, "level_shares", spy)
    save_example_figure(root, tmp_path / "q.png", n=1)
    ((levels, shares),) = seen
    assert levels == [14, 29, 43, 57, 71, 86, 100]
    assert shares[0].tolist() == [0.0, 0.0, 50.0, 0.0, 0.0, 50.0, 0.0]


def test_one_palette_for_reports_and_annotator() -> None:
    assert DEFAULT_COLORS == PALETTE
    assert hex_colour(0) == "#ffc800" and hex_colour(len(PALETTE)) == hex_colour(0)
    assert class_colours(2) == list(PALETTE[:2])


def test_uint16_image_is_shown_as_the_model_sees_it() -> None:
    img = np.array([[0, 1000], [2000, 4000]], np.uint16)
    out = overlay_confidence(img, np.zeros((1, 2, 2), np.float32))
    assert np.array_equal(out[..., 0], to_display(img))
    assert out[1, 1].tolist() == [255, 255, 255]
