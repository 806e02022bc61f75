"""Tests of the one rater-map decoder and the one optional-import helper (confseg.io)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from confseg.data import DatasetWriter, load_dataset
from confseg.errors import ConfsegError, MissingExtraError
from confseg.io.images import read_rater_map, write_png
from confseg.io.optional import require


def _write(tmp_path: Path, name: str, arr: np.ndarray) -> Path:
    p = tmp_path / f"{name}.png"
    write_png(p, arr)
    return p


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([0, 1, 1, 0], [0, 100, 100, 0]),        # 0/1 binary mask
        ([0, 255, 200, 90], [0, 100, 100, 0]),    # 0/255 mask, lossy grey around it (> 127)
        ([0, 20, 60, 100], [0, 20, 60, 100]),     # percent map, kept
        ([0, 0, 0, 0], [0, 0, 0, 0]),             # empty
    ],
    ids=["zero-one", "zero-255", "percent", "empty"],
)
def test_read_rater_map_rule(tmp_path: Path, values: list[int], expected: list[int]) -> None:
    arr = np.asarray(values, dtype=np.uint8).reshape(2, 2)
    out = read_rater_map(_write(tmp_path, "m", arr))
    assert out.dtype == np.uint8 and out.shape == (2, 2)
    assert out.ravel().tolist() == expected


def test_read_rater_map_rgb_takes_the_channel_maximum(tmp_path: Path) -> None:
    rgb = np.zeros((2, 3, 3), np.uint8)
    rgb[0, 0] = (255, 0, 0)       # a red mask pixel
    rgb[0, 1] = (0, 0, 255)       # a blue one
    rgb[1, 2] = (40, 100, 30)     # dark colour, below 127 in every channel
    out = read_rater_map(_write(tmp_path, "rgb", rgb))
    assert out.tolist() == [[100, 100, 0], [0, 0, 0]]
    pct = np.zeros((1, 2, 3), np.uint8)
    pct[0, 1] = (60, 60, 60)      # a grey percent map saved as RGB
    assert read_rater_map(_write(tmp_path, "pct", pct)).tolist() == [[0, 60]]


def test_dataset_and_annotator_read_rater_maps_alike(tmp_path: Path) -> None:
    from confseg.annotator.layout import Layout

    root = tmp_path / "ds"
    m = np.zeros((4, 5), bool)
    m[1:3, 1:4] = True
    soft = np.where(m, 0.4, 0.0).astype(np.float32)
    with DatasetWriter(root, name="x", classes=["a"]) as w:
        w.add(item_id="i", patient="p", image=np.zeros((4, 5), np.uint8),
              raters={"r1": {"a": m}, "r2": {"a": soft}})
    # a 0/255 mask, as other tools write them
    write_png(root / "raters/r1/a/i.png", m.astype(np.uint8) * 255)
    ds = load_dataset(root)
    it = ds.item("i")
    for rater, want in (("r1", m.astype(np.float32)), ("r2", soft)):
        unit = ds.read_rater(it, rater, "a")
        assert unit.dtype == np.float32 and np.allclose(unit, want)
        pct = Layout(root.resolve(), rater).read_map(it.raters[rater]["a"], (4, 5),
                                                     binary_ok=True)
        assert np.array_equal(pct, np.rint(want * 100).astype(np.uint8))


def test_require_imports_or_names_the_extra() -> None:
    assert require("json", "medical", purpose="x").__name__ == "json"
    with pytest.raises(MissingExtraError) as err:
        require("confseg_no_such_module", "medical", purpose="reading NIfTI")
    msg = str(err.value)
    assert msg == ("reading NIfTI needs confseg_no_such_module: "
                   "pip install 'confseg[medical]'")
    assert "\n" not in msg and isinstance(err.value, ConfsegError)
    with pytest.raises(MissingExtraError, match=r"needs confseg_gone: pip install confseg$"):
        require("confseg_gone", None, purpose="pre-annotation")


def test_missing_nibabel_names_the_medical_extra(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from confseg.io.images import read_image

    p = tmp_path / "x.nii.gz"
    p.write_bytes(b"not read")
    monkeypatch.setitem(sys.modules, "nibabel", None)  # import nibabel -> ImportError
    with pytest.raises(MissingExtraError,
                       match=r"x\.nii\.gz: reading NIfTI needs nibabel: pip install "
                             r"'confseg\[medical\]'"):
        read_image(p)
