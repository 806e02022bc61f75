"""Tests of confseg.io: the rater-map decoder, the optional-import helper, the one pixel limit
(decompression bombs), non-finite float images and confidence maps that are PNG by content."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from confseg.data import DatasetWriter, load_dataset
from confseg.errors import ConfsegError, MissingExtraError
from confseg.io.images import read_rater_map, write_png
from confseg.io.optional import require

from conftest import png_claiming


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


# ----- the one pixel limit (decompression bombs) ---------------------------------------------
BOMB_MSG = ("image is 20000x10000 = 200 Mpixel, above the limit of 50 Mpixel "
            "(CONFSEG_MAX_IMAGE_PIXELS); downsample it or raise the limit")


@pytest.mark.parametrize("reader", ["read_image", "image_shape", "read_percent_map",
                                    "read_rater_map", "read_mask"])
def test_bomb_png_refused_from_its_header(tmp_path: Path, reader: str) -> None:
    import warnings

    from confseg import io as cio
    from confseg.errors import ImageTooLargeError, MediaError
    from confseg.io import images

    p = png_claiming(tmp_path / "bomb.png", 20000, 10000)
    assert p.stat().st_size < 100
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        with pytest.raises(ImageTooLargeError) as err:
            getattr(images, reader)(p)
    assert str(err.value) == f"{p}: {BOMB_MSG}"
    assert isinstance(err.value, MediaError)
    assert not [w for w in rec if "DecompressionBomb" in w.category.__name__]
    assert cio.read_image is images.read_image


def test_bomb_beyond_pils_own_error_limit_is_still_one_line(tmp_path: Path) -> None:
    from PIL import Image

    from confseg.errors import ImageTooLargeError
    from confseg.io.images import read_image

    p = png_claiming(tmp_path / "huge.png", 2**31 - 1, 2**31 - 1)
    with pytest.raises(ImageTooLargeError, match=r"image is 2147483647x2147483647 = "):
        read_image(p)
    assert Image.MAX_IMAGE_PIXELS == 1024 * 1024 * 1024 // 4 // 3  # PIL's own limit restored


def test_pixel_limit_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from confseg.errors import ImageTooLargeError
    from confseg.io.images import (
        MAX_IMAGE_PIXELS,
        check_pixels,
        image_shape,
        max_image_pixels,
        read_image,
    )

    assert MAX_IMAGE_PIXELS == max_image_pixels() == 50_000_000
    bomb = png_claiming(tmp_path / "bomb.png", 20000, 10000)
    monkeypatch.setenv("CONFSEG_MAX_IMAGE_PIXELS", "300_000_000")
    assert max_image_pixels() == 300_000_000
    assert image_shape(bomb) == (10000, 20000)  # header only: nothing decoded
    small = _write(tmp_path, "small", np.zeros((8, 8), np.uint8))
    monkeypatch.setenv("CONFSEG_MAX_IMAGE_PIXELS", "64")
    assert read_image(small).shape == (8, 8)
    monkeypatch.setenv("CONFSEG_MAX_IMAGE_PIXELS", "63")
    with pytest.raises(ImageTooLargeError, match=r"small\.png: image is 8x8 = 64 pixels, "
                                                 r"above the limit of 63 pixels"):
        read_image(small)
    with pytest.raises(ImageTooLargeError, match=r"^entry 'x': image is 9x8 = 72 pixels"):
        check_pixels(8, 9, "entry 'x'")
    check_pixels(7, 9, "entry 'x'")  # 63: at the limit, allowed
    for bad in ("lots", "-5", "0", "1.5e8"):
        monkeypatch.setenv("CONFSEG_MAX_IMAGE_PIXELS", bad)
        with pytest.raises(ConfsegError, match=r"CONFSEG_MAX_IMAGE_PIXELS=.* is not a pos") as e:
            read_image(small)
        assert "\n" not in str(e.value)
    monkeypatch.delenv("CONFSEG_MAX_IMAGE_PIXELS")
    check_pixels(10000, 5000, "x")  # exactly at the default limit: allowed


def test_bomb_nifti_and_dicom_refused_from_the_header(tmp_path: Path) -> None:
    import struct

    from confseg.errors import ImageTooLargeError
    from confseg.io.images import read_image

    nib = pytest.importorskip("nibabel")
    p = tmp_path / "bomb.nii"
    nib.save(nib.Nifti1Image(np.zeros((4, 3), np.uint8), np.eye(4)), p)
    raw = bytearray(p.read_bytes())
    raw[40:46] = struct.pack("<hhh", 2, 20000, 10000)  # dim[0..2]: 2D, x=20000, y=10000
    p.write_bytes(bytes(raw))
    with pytest.raises(ImageTooLargeError) as err:
        read_image(p)
    assert str(err.value) == f"{p}: {BOMB_MSG}"

    pydicom = pytest.importorskip("pydicom")
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.SOPClassUID, ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPClassUID, generate_uid()
    ds.Rows, ds.Columns, ds.NumberOfFrames = 1000, 2000, 40
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = b"\x00" * 16
    d = tmp_path / "bomb.dcm"
    ds.save_as(d, enforce_file_format=True)
    with pytest.raises(ImageTooLargeError, match=r"bomb\.dcm: image is 2000x1000x40 frames = "
                                                 r"80 Mpixel, above the limit of 50 Mpixel"):
        read_image(d)
    assert pydicom.dcmread(d).Rows == 1000


# ----- non-finite float images ----------------------------------------------------------------
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_float_tiff_with_nan_or_inf_refused(tmp_path: Path, bad: float) -> None:
    from PIL import Image

    from confseg.errors import MediaError
    from confseg.io.images import read_image

    arr = np.linspace(0, 1, 12, dtype=np.float32).reshape(3, 4)
    ok = tmp_path / "ok.tif"
    Image.fromarray(arr, mode="F").save(ok)
    np.testing.assert_array_equal(read_image(ok), arr)  # finite float images still read
    arr[1, 2] = bad
    p = tmp_path / "bad.tif"
    Image.fromarray(arr, mode="F").save(p)
    with pytest.raises(MediaError) as err:
        read_image(p)
    assert str(err.value) == f"{p}: holds NaN or infinite values; fix the export"


def test_nifti_with_nan_refused(tmp_path: Path) -> None:
    from confseg.errors import MediaError
    from confseg.io.images import read_image

    nib = pytest.importorskip("nibabel")
    arr = np.ones((4, 3), np.float32)
    nib.save(nib.Nifti1Image(arr, np.eye(4)), tmp_path / "ok.nii.gz")
    assert read_image(tmp_path / "ok.nii.gz").shape == (3, 4)
    arr[2, 1] = np.nan
    p = tmp_path / "nan.nii.gz"
    nib.save(nib.Nifti1Image(arr, np.eye(4)), p)
    with pytest.raises(MediaError, match=r"nan\.nii\.gz: holds NaN or infinite values; fix the "
                                         r"export$"):
        read_image(p)


# ----- confidence maps are PNG by content, not only by name ------------------------------------
def test_jpeg_data_named_png_refused_as_confidence_map(tmp_path: Path) -> None:
    from PIL import Image

    from confseg.errors import MediaError
    from confseg.io.images import read_percent_map

    arr = np.zeros((16, 16), np.uint8)
    arr[4:12, 4:12] = 60
    p = tmp_path / "map.png"
    Image.fromarray(arr).save(p, format="JPEG", quality=75)
    with pytest.raises(MediaError) as err:
        read_percent_map(p)
    assert str(err.value) == (f"{p}: is JPEG data named .png; confidence maps must be lossless "
                              "PNG: re-export as PNG")
    np.testing.assert_array_equal(read_percent_map(_write(tmp_path, "real", arr)), arr)
