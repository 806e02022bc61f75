"""Importers on tiny hand-made layouts: counts, exact values, errors."""

from __future__ import annotations

import csv
import json
import warnings
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from confseg.data import load_dataset
from confseg.errors import ConfsegError, DatasetError, ImportLayoutError
from confseg.importers import IMPORTERS, importer_options, run_import
from confseg.importers.covid_blues import parse_number
from confseg.importers.cvat import decode_cvat_rle
from confseg.importers.labelstudio import decode_brush_rle
from confseg.io.images import read_percent_map


def _save(path: Path, arr: np.ndarray, **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path, **kw)
    return path


def _box(shape, y0, y1, x0, x1) -> np.ndarray:
    m = np.zeros(shape, dtype=bool)
    m[y0:y1, x0:x1] = True
    return m


def _conf(ds, item_id: str, cls: str) -> np.ndarray:
    return read_percent_map(ds.path(ds.item(item_id).confidence[cls]))


def test_registry_and_unknown_layout(tmp_path):
    assert set(IMPORTERS) == {
        "lus-cs541",
        "multirater",
        "covid-blues",
        "nnunet",
        "cvat",
        "labelstudio",
    }
    with pytest.raises(ImportLayoutError, match=r"unknown layout 'nope'.*lus-cs541"):
        run_import("nope", tmp_path, tmp_path / "out")
    assert "class_name" in importer_options("multirater")
    with pytest.raises(ConfsegError, match="unknown option 'bogus'"):
        run_import("multirater", tmp_path, tmp_path / "out", bogus=1)


# ----- lus-cs541 ---------------------------------------------------------------------------
SHAPE = (32, 48)  # H, W (8-aligned boxes survive JPEG + threshold exactly)
PLEURA = _box(SHAPE, 8, 16, 8, 40)
SHADOW = _box(SHAPE, 16, 32, 0, 24)
RIBLINE = _box(SHAPE, 8, 16, 0, 8)


def _lus(root: Path) -> Path:
    rng = np.random.default_rng(0)
    stems = [
        "din-01-L-1-V-frame0",
        "din-01-L-1-V-frame10",
        "din-01-R-2-V-frame2",
        "man-01-L-2-V-frame0",
    ]
    for s in stems:
        _save(
            root / "image" / f"{s}.jpg",
            rng.integers(0, 255, (*SHAPE, 3), dtype=np.uint8),
            quality=90,
        )
        _save(
            root / "mask" / "pleural_line" / f"{s}-pleural_line.jpg",
            np.repeat(PLEURA[..., None] * 255, 3, -1).astype(np.uint8),
            quality=95,
        )
    for s in stems[:2]:  # frames 3 and 4 have no rib shadow
        _save(
            root / "mask" / "rib_shadow" / f"{s}-rib_shadow.jpg",
            (SHADOW * 255).astype(np.uint8),
            quality=95,
        )
    _save(
        root / "mask" / "rib_line" / f"{stems[0]}-rib_line.jpg",
        (RIBLINE * 255).astype(np.uint8),
        quality=95,
    )
    return root


def test_lus_cs541(tmp_path):
    src = _lus(tmp_path / "lus")
    calls = []
    out = run_import("lus-cs541", src, tmp_path / "ds", progress=lambda d, t: calls.append((d, t)))
    ds = load_dataset(out)
    assert ds.classes == ("pleural_line", "rib_shadow")
    assert [it.id for it in ds.items] == [
        "din-01-L-1-V-frame0",
        "din-01-L-1-V-frame10",
        "din-01-R-2-V-frame2",
        "man-01-L-2-V-frame0",
    ]
    assert ds.patients() == ["din-01", "man-01"]
    assert [it.view for it in ds.items] == ["L-1", "L-1", "R-2", "L-2"]
    assert all(it.day == 0 for it in ds.items)
    assert calls[0] == (0, 4) and calls[-1] == (4, 4)
    it = ds.item("din-01-L-1-V-frame10")
    assert it.image == "images/din-01-L-1-V-frame10.jpg"  # kept as JPEG, byte for byte
    assert ds.path(it.image).read_bytes() == (src / "image" / f"{it.id}.jpg").read_bytes()
    assert ds.read_image(it).shape == (*SHAPE, 3)
    np.testing.assert_array_equal(_conf(ds, it.id, "pleural_line"), PLEURA * 100)
    np.testing.assert_array_equal(_conf(ds, it.id, "rib_shadow"), SHADOW * 100)
    assert set(ds.item("man-01-L-2-V-frame0").confidence) == {"pleural_line"}  # absent = no entry
    ds2 = load_dataset(
        run_import("lus-cs541", src, tmp_path / "ds2", classes="pleural_line,rib_shadow,rib_line")
    )
    assert ds2.classes == ("pleural_line", "rib_shadow", "rib_line")
    np.testing.assert_array_equal(_conf(ds2, "din-01-L-1-V-frame0", "rib_line"), RIBLINE * 100)
    assert sum("rib_line" in i.confidence for i in ds2.items) == 1


def test_lus_cs541_errors(tmp_path):
    src = _lus(tmp_path / "lus")
    (src / "image" / "din-01-L-1-V-frame0.jpg").rename(tmp_path / "moved.jpg")
    with pytest.raises(ImportLayoutError, match="mask without an image"):
        run_import("lus-cs541", src, tmp_path / "ds")
    (tmp_path / "moved.jpg").rename(src / "image" / "din-01-L-1-V-frame0.jpg")
    (src / "image" / "notes.txt").write_text("x")
    with pytest.raises(ImportLayoutError, match=r"notes\.txt: unexpected file"):
        run_import("lus-cs541", src, tmp_path / "ds")
    (src / "image" / "notes.txt").unlink()
    with pytest.raises(ImportLayoutError, match=r"mask/b_line: folder missing.*class 'b_line'"):
        run_import("lus-cs541", src, tmp_path / "ds", classes=["b_line"])
    _save(
        src / "mask" / "rib_shadow" / "din-01-L-1-V-frame0-rib_shadow.jpg",
        np.zeros((10, 10), np.uint8),
    )
    with pytest.raises(DatasetError, match="size 10x10 differs from image"):
        run_import("lus-cs541", src, tmp_path / "ds")
    assert not (tmp_path / "ds").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".ds")] == []
    with pytest.raises(ImportLayoutError, match=r"image: folder missing.*expects image/"):
        run_import("lus-cs541", src / "mask", tmp_path / "ds")
    with pytest.raises(ImportLayoutError, match="overlaps the source"):
        run_import("lus-cs541", src, src / "out")


# ----- multirater -------------------------------------------------------------------------
def _multirater(root: Path) -> list[list[np.ndarray]]:
    rng = np.random.default_rng(1)
    cases = []
    for c in ("case01", "case02"):
        masks = [rng.random((16, 16)) < 0.5 for _ in range(3)]
        _save(root / c / "image.png", rng.integers(0, 255, (16, 16), dtype=np.uint8))
        for r, m in enumerate(masks, 1):
            _save(root / c / f"seg{r:02d}.png", (m * 255).astype(np.uint8))
        cases.append(masks)
    return cases


def test_multirater(tmp_path):
    cases = _multirater(tmp_path / "q")
    ds = load_dataset(run_import("multirater", tmp_path / "q", tmp_path / "ds", class_name="brain"))
    assert ds.classes == ("brain",) and [i.id for i in ds.items] == ["case01", "case02"]
    assert ds.patients() == ["case01", "case02"] and ds.raters() == ["r01", "r02", "r03"]
    assert [lv.value for lv in ds.scale] == [33, 67, 100]
    for it, masks in zip(ds.items, cases, strict=True):
        expected = np.rint(np.mean(masks, axis=0) * 100).astype(np.uint8)
        np.testing.assert_array_equal(_conf(ds, it.id, "brain"), expected)
        assert set(np.unique(expected)) == {0, 33, 67, 100}
        for r, m in zip(ds.raters(), masks, strict=True):
            np.testing.assert_array_equal(ds.read_rater(it, r, "brain"), m.astype(np.float32))
    ds2 = load_dataset(
        run_import("multirater", tmp_path / "q", tmp_path / "ds2", rater_names="stem")
    )
    assert ds2.raters() == ["seg01", "seg02", "seg03"] and ds2.classes == ("foreground",)
    with pytest.raises(ConfsegError, match="already exists"):
        run_import("multirater", tmp_path / "q", tmp_path / "ds2", class_name="brain")
    run_import("multirater", tmp_path / "q", tmp_path / "ds2", class_name="brain", overwrite=True)
    assert load_dataset(tmp_path / "ds2").classes == ("brain",)


def test_multirater_errors(tmp_path):
    _multirater(tmp_path / "q")
    (tmp_path / "q" / "case02" / "image.png").rename(tmp_path / "q" / "case02" / "a.png")
    (tmp_path / "q" / "case02" / "b.png").write_bytes(b"")
    with pytest.raises(ImportLayoutError, match=r"several candidate images \(a\.png, b\.png\)"):
        run_import("multirater", tmp_path / "q", tmp_path / "ds")
    (tmp_path / "q" / "case02" / "b.png").unlink()
    (tmp_path / "q" / "case02" / "a.png").unlink()
    with pytest.raises(ImportLayoutError, match=r"case02/image\.png: image missing"):
        run_import("multirater", tmp_path / "q", tmp_path / "ds")
    with pytest.raises(ImportLayoutError, match=r"no rater mask matching 'mask_\*'"):
        run_import("multirater", tmp_path / "q", tmp_path / "ds", mask_pattern="mask_*")


# ----- covid-blues ------------------------------------------------------------------------
def _mp4(path: Path, level: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as c:
        s = c.add_stream("mpeg4", rate=10)
        s.width, s.height, s.pix_fmt = 32, 32, "yuv420p"
        for i in range(3):
            frame = av.VideoFrame.from_ndarray(
                np.full((32, 32, 3), level + 20 * i, np.uint8), format="rgb24"
            )
            for p in s.encode(frame):
                c.mux(p)
        for p in s.encode():
            c.mux(p)


def _write_csv(path: Path, rows: list[dict]) -> None:
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def _covid(root: Path) -> Path:
    _mp4(root / "lus_videos" / "patient_3_L1.mp4", 10)
    _mp4(root / "lus_videos" / "patient_12_R2_2.mp4", 100)
    _write_csv(
        root / "severity.csv",
        [
            {
                "video_file": "patient_3_L1",
                "Severity Score": "2.0",
                "A-lines": "no",
                "B-lines": "yes ",
                "comments": "B-lines",
            },
            {
                "video_file": "patient_12_R2_2",
                "Severity Score": "",
                "A-lines": "yes",
                "B-lines": "no",
                "comments": "",
            },
        ],
    )
    base = {
        "cov_test": "1",
        "oxygen_saturation_with_ox": "-96",
        "oxygen_liter": "",
        "respiratory_rate": "20.0",
        "pat_age": "61",
        "pat_sex": "1.0",
        "CRP": "12.5",
        "outcome_status_d0": "1",
        "outcome_status_d1": "1",
        "outcome_status_d3": "2",
        "outcome_status_d5": "2",
        "outcome_status_d7": "2.0",
        "outcome_status_d30": "2.0",
        "los_totaladmission": "3",
        "stay_icu": "",
        "clin_diagn#healthy_lung": "0",
        "clin_diagn#COVID19_pneumonia": "1",
    }
    _write_csv(
        root / "clinical_variables.csv",
        [
            {
                "patient_id": "12",
                **base,
                "oxygen_saturation_without_ox": "-99.0",
                "oxygen_saturation_with_ox": "90-92",
                "oxygen_liter": "2.0",
            },
            {
                "patient_id": "3",
                **base,
                "oxygen_saturation_without_ox": "95.0",
                "respiratory_rate": "-99.0",
                "cov_test": "0",
                "clin_diagn#healthy_lung": "1",
                "clin_diagn#COVID19_pneumonia": "0",
            },
        ],
    )
    return root


def test_covid_blues(tmp_path):
    src = _covid(tmp_path / "cb")
    ds = load_dataset(run_import("covid-blues", src, tmp_path / "ds"))
    assert ds.classes == ("pleural_line", "b_line", "a_line")
    assert [(i.id, i.patient, i.view, i.day) for i in ds.items] == [
        ("patient_3_L1", "3", "L1", 0),
        ("patient_12_R2_2", "12", "R2", 0),
    ]
    a, b = ds.items
    assert a.image is None and a.video == "videos/patient_3_L1.mp4"
    assert ds.path(a.video).read_bytes() == (src / "lus_videos/patient_3_L1.mp4").read_bytes()
    assert (a.extra["severity"], a.extra["a_lines"], a.extra["b_lines"]) == (2.0, False, True)
    assert (b.extra["severity"], b.extra["a_lines"], b.extra["b_lines"]) == (None, True, False)
    rows = ds.read_clinical()
    assert [r["patient"] for r in rows] == ["3", "12"]
    r3, r12 = rows
    assert (r3["spo2"], r3["fio2"], r3["sf_ratio"]) == ("95.0", "0.21", str(round(95 / 0.21, 1)))
    assert r3["sf_ratio"] == "452.4" and r3["respiratory_rate"] == ""
    assert (r3["diagnosis"], r3["cov_test"], r3["outcome_d30"]) == ("healthy_lung", "0", "2")
    assert (r12["spo2"], r12["fio2"], r12["sf_ratio"]) == ("", "", "")
    assert (r12["spo2_with_ox"], r12["oxygen_liter"], r12["stay_icu"]) == ("91.0", "2.0", "")
    assert r12["diagnosis"] == "COVID19_pneumonia" and r12["los_totaladmission"] == "3"
    assert "readmit_30d" not in r12
    assert (r12["age"], r12["sex"], r12["crp"], r12["pulse"]) == ("61.0", "1", "12.5", "")
    table = ds.clinical_table()  # covariates: known at the visit, never the oxygen given
    assert {"age", "sex", "crp", "respiratory_rate"} <= set(table.covariates)
    assert not {"oxygen_liter", "spo2_with_ox", "sf_ratio"} & set(table.covariates)
    assert table.covariate_rows()[("3", 0)]["clin.age"] == 61.0
    assert parse_number("-96") is None and parse_number(" ") is None


def test_covid_blues_errors(tmp_path):
    src = _covid(tmp_path / "cb")
    (src / "lus_videos" / "patient_3_X1.mp4").write_bytes(b"")
    with pytest.raises(ImportLayoutError, match=r"patient_3_X1\.mp4: unexpected file"):
        run_import("covid-blues", src, tmp_path / "ds")
    (src / "lus_videos" / "patient_3_X1.mp4").unlink()
    (src / "severity.csv").unlink()
    with pytest.raises(ImportLayoutError, match=r"severity\.csv: file missing"):
        run_import("covid-blues", src, tmp_path / "ds")


# ----- nnU-Net ----------------------------------------------------------------------------
LABELS = {"background": 0, "pleura": 1, "bline": 2, "ignore": 3}


def _nnunet(root: Path, channels: int = 1) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(2)
    names = {str(c): f"c{c}" for c in range(channels)}
    root.mkdir(parents=True)
    (root / "dataset.json").write_text(
        json.dumps(
            {"channel_names": names, "labels": LABELS, "numTraining": 3, "file_ending": ".png"}
        )
    )
    labs = {}
    for case in ("p01_f0", "p01_f1", "p02_f0"):
        lab = rng.integers(0, 3, (12, 20)).astype(np.uint8)
        if case == "p01_f1":
            lab[:3] = 3
        labs[case] = lab
        _save(root / "labelsTr" / f"{case}.png", lab)
        for c in range(channels):
            _save(
                root / "imagesTr" / f"{case}_{c:04d}.png",
                rng.integers(0, 255, (12, 20), dtype=np.uint8),
            )
    return labs


def test_nnunet(tmp_path):
    labs = _nnunet(tmp_path / "Dataset001_X")
    ds = load_dataset(
        run_import("nnunet", tmp_path / "Dataset001_X", tmp_path / "ds", patient_regex=r"^(\w+?)_")
    )
    assert ds.classes == ("pleura", "bline") and ds.patients() == ["p01", "p02"]
    assert [i.id for i in ds.items] == ["p01_f0", "p01_f1", "p02_f0"]
    for it in ds.items:
        lab = labs[it.id]
        np.testing.assert_array_equal(_conf(ds, it.id, "pleura"), (lab == 1) * 100)
        np.testing.assert_array_equal(_conf(ds, it.id, "bline"), (lab == 2) * 100)
    np.testing.assert_array_equal(ds.read_ignore(ds.item("p01_f1")), labs["p01_f1"] == 3)
    assert ds.item("p01_f0").ignore is None
    src_img = tmp_path / "Dataset001_X" / "imagesTr" / "p01_f0_0000.png"
    np.testing.assert_array_equal(ds.read_image(ds.item("p01_f0")), np.asarray(Image.open(src_img)))
    assert load_dataset(
        run_import("nnunet", tmp_path / "Dataset001_X", tmp_path / "d2")
    ).patients() == ["p01_f0", "p01_f1", "p02_f0"]


def test_nnunet_channels(tmp_path):
    _nnunet(tmp_path / "rgb", channels=3)
    ds = load_dataset(run_import("nnunet", tmp_path / "rgb", tmp_path / "ds"))
    img = ds.read_image(ds.item("p02_f0"))
    assert img.shape == (12, 20, 3)
    for c in range(3):
        ch = np.asarray(Image.open(tmp_path / "rgb" / "imagesTr" / f"p02_f0_{c:04d}.png"))
        np.testing.assert_array_equal(img[..., c], ch)
    _nnunet(tmp_path / "two", channels=2)
    with pytest.warns(UserWarning, match="only channel _0000"):
        ds2 = load_dataset(run_import("nnunet", tmp_path / "two", tmp_path / "ds2"))
    assert ds2.read_image(ds2.items[0]).shape == (12, 20)


def test_nnunet_errors(tmp_path):
    labs = _nnunet(tmp_path / "n")
    lab = labs["p02_f0"].copy()
    lab[0, 0] = 7
    _save(tmp_path / "n" / "labelsTr" / "p02_f0.png", lab)
    with pytest.raises(DatasetError, match=r"p02_f0\.png: label value 7 is not in"):
        run_import("nnunet", tmp_path / "n", tmp_path / "ds")
    assert not (tmp_path / "ds").exists()
    _save(tmp_path / "n" / "labelsTr" / "p02_f0.png", np.zeros((5, 5), np.uint8))
    with pytest.raises(DatasetError, match="size 5x5 differs from image"):
        run_import("nnunet", tmp_path / "n", tmp_path / "ds")
    (tmp_path / "n" / "imagesTr" / "p01_f1_0000.png").unlink()
    with pytest.raises(ImportLayoutError, match=r"p01_f1_0000\.png: file missing"):
        run_import("nnunet", tmp_path / "n", tmp_path / "ds")
    spec = json.loads((tmp_path / "n" / "dataset.json").read_text())
    spec["labels"]["region"] = [1, 2]
    (tmp_path / "n" / "dataset.json").write_text(json.dumps(spec))
    with pytest.raises(ImportLayoutError, match="region-based"):
        run_import("nnunet", tmp_path / "n", tmp_path / "ds")


def test_nnunet_3d_nifti(tmp_path):
    nib = pytest.importorskip("nibabel")
    root = tmp_path / "n3d"
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    (root / "dataset.json").write_text(
        json.dumps(
            {
                "channel_names": {"0": "CT"},
                "labels": {"background": 0, "organ": 1},
                "file_ending": ".nii.gz",
            }
        )
    )
    vol = np.zeros((8, 8, 4), np.uint8)
    nib.save(nib.Nifti1Image(vol, np.eye(4)), root / "imagesTr" / "c1_0000.nii.gz")
    nib.save(nib.Nifti1Image(vol, np.eye(4)), root / "labelsTr" / "c1.nii.gz")
    with pytest.raises(ImportLayoutError, match="3D NIfTI is not supported yet"):
        run_import("nnunet", root, tmp_path / "ds")


# ----- CVAT -------------------------------------------------------------------------------
def cvat_rle(mask: np.ndarray) -> str:
    """Test-side encoder: alternating run lengths, starting with 0s."""
    flat = mask.ravel().astype(np.int8)
    edges = np.flatnonzero(np.diff(np.concatenate([[0], flat, [1 - flat[-1]]])))
    runs = np.diff(np.concatenate([[0], edges]))
    return ", ".join(str(int(r)) for r in runs)


def test_cvat_rle_roundtrip():
    m = np.random.default_rng(3).random((5, 7)) < 0.4
    np.testing.assert_array_equal(decode_cvat_rle(map(int, cvat_rle(m).split(",")), 7, 5), m)
    np.testing.assert_array_equal(
        decode_cvat_rle([2, 3], 3, 2), [[False, False, True], [True, True, False]]
    )


def _cvat(root: Path) -> Path:
    _save(root / "images" / "p01_f0.png", np.full((20, 24), 50, np.uint8))
    _save(root / "images" / "p02_f0.png", np.full((20, 24, 3), 80, np.uint8))
    mask = _box((4, 6), 1, 3, 2, 6)  # box-local mask
    xml = f"""<?xml version="1.0" encoding="utf-8"?>
<annotations><version>1.1</version>
 <meta><task><labels><label><name>pleura</name></label><label><name>bline</name>
 <attributes><attribute><name>confidence</name></attribute></attributes></label></labels>
 </task></meta>
 <image id="0" name="p01_f0.png" width="24" height="20">
  <polygon label="bline" points="2,2;9,2;9,5;2,5" z_order="1">
   <attribute name="confidence">60</attribute></polygon>
  <polygon label="bline" points="6,4;12,4;12,8;6,8" z_order="0">
   <attribute name="confidence">20</attribute></polygon>
  <polygon label="bline" points="0,10;3,10;3,12;0,12" z_order="1">
   <attribute name="confidence">40</attribute></polygon>
  <mask label="pleura" rle="{cvat_rle(mask)}" left="10" top="12" width="6" height="4"
   z_order="0"/>
  <polyline label="pleura" points="0,0;5,5" z_order="0"/>
 </image>
 <image id="1" name="p02_f0.png" width="24" height="20"/>
</annotations>"""
    (root / "annotations.xml").write_text(xml)
    return root


def test_cvat(tmp_path):
    src = _cvat(tmp_path / "cv")
    with pytest.warns(UserWarning, match="1 shape"):
        ds = load_dataset(run_import("cvat", src, tmp_path / "ds", patient_regex=r"^(p\d+)_"))
    assert ds.classes == ("pleura", "bline") and ds.patients() == ["p01", "p02"]
    expected = np.zeros((20, 24), np.uint8)
    expected[4:9, 6:13] = 20  # z_order 0 is painted first ...
    expected[2:6, 2:10] = 60  # ... so the z_order 1 shape wins where they overlap
    expected[10:13, 0:4] = 40
    np.testing.assert_array_equal(_conf(ds, "p01_f0", "bline"), expected)
    pleura = np.zeros((20, 24), np.uint8)
    pleura[13:15, 12:16] = 100  # missing confidence attribute = 100
    np.testing.assert_array_equal(_conf(ds, "p01_f0", "pleura"), pleura)
    assert ds.item("p02_f0").confidence == {}
    assert ds.read_image(ds.item("p02_f0")).shape == (20, 24, 3)


def test_cvat_errors(tmp_path):
    src = _cvat(tmp_path / "cv")
    with pytest.raises(ImportLayoutError, match="pass images=DIR"):
        run_import("cvat", src, tmp_path / "ds", images=tmp_path / "none")
    (src / "images" / "p02_f0.png").unlink()
    with pytest.raises(ImportLayoutError, match=r"p02_f0\.png: image missing"):
        run_import("cvat", src, tmp_path / "ds")
    _save(src / "images" / "p02_f0.png", np.zeros((5, 5), np.uint8))
    with pytest.raises(ImportLayoutError, match="size 5x5 differs"):
        run_import("cvat", src, tmp_path / "ds")
    assert not (tmp_path / "ds").exists()


# ----- Label Studio -----------------------------------------------------------------------
def ls_brush_rle(values: np.ndarray) -> list[int]:
    """Test-side encoder of Label Studio's brush RLE (rle-pack: runs and literal blocks)."""
    sizes = [3, 4, 8, 16]
    bits = f"{len(values):032b}{8 - 1:05b}" + "".join(f"{s - 1:04b}" for s in sizes)

    def block(flag: int, n: int, words: list[int]) -> str:
        idx = next(k for k, s in enumerate(sizes) if n - 1 < 2**s)
        return f"{flag}{idx:02b}{n - 1:0{sizes[idx]}b}" + "".join(f"{w:08b}" for w in words)

    i, vals = 0, [int(v) for v in values]
    while i < len(vals):
        j = i
        while j < len(vals) and vals[j] == vals[i] and j - i < 2**16:
            j += 1
        if j - i > 1:
            bits += block(1, j - i, [vals[i]])
        else:  # literal block up to the next repeat (at most 8 values)
            j = i + 1
            while j < len(vals) and j - i < 8 and (j + 1 >= len(vals) or vals[j] != vals[j + 1]):
                j += 1
            bits += block(0, j - i, vals[i:j])
        i = j
    bits += "0" * (-len(bits) % 8)
    return [int(bits[k : k + 8], 2) for k in range(0, len(bits), 8)]


def test_brush_rle_decoder():
    vals = np.array([0] * 20 + [255] * 3 + [1, 2, 3, 4] + [0] * 70000 + [9], np.uint8)
    np.testing.assert_array_equal(decode_brush_rle(ls_brush_rle(vals)), vals)
    # hand-written stream: 4 values, word 8 bits, run-length widths [1, 1, 1, 1]:
    # a run of 2 x 7, then two literal blocks of one value each (200, then 0)
    bits = f"{4:032b}{7:05b}" + "0000" * 4
    bits += "1" + "00" + "1" + f"{7:08b}"
    bits += "0" + "00" + "0" + f"{200:08b}"
    bits += "0" + "00" + "0" + f"{0:08b}"
    bits += "0" * (-len(bits) % 8)
    raw = [int(bits[k : k + 8], 2) for k in range(0, len(bits), 8)]
    assert decode_brush_rle(raw).tolist() == [7, 7, 200, 0]
    with pytest.raises(ValueError, match="ends early"):
        decode_brush_rle(raw[:6])


def _ls(root: Path) -> tuple[Path, np.ndarray]:
    h, w = 10, 20
    _save(root / "imgs" / "p07_a.png", np.full((h, w), 30, np.uint8))
    _save(root / "imgs" / "p07_b.png", np.full((h, w), 60, np.uint8))
    brush = _box((h, w), 6, 9, 1, 5)
    rgba = np.repeat((brush * 255).astype(np.uint8)[..., None], 4, -1)
    size = {"original_width": w, "original_height": h}
    tasks = [
        {
            "id": 1,
            "data": {"image": "/data/upload/1/3f2a9c1e-p07_a.png"},
            "annotations": [
                {"was_cancelled": True, "result": []},
                {
                    "result": [
                        {
                            "id": "a",
                            "type": "polygonlabels",
                            **size,
                            "value": {
                                "points": [[10, 10], [50, 10], [50, 50], [10, 50]],
                                "polygonlabels": ["bline"],
                            },
                        },
                        {"id": "a", "type": "rating", "value": {"rating": 2}},
                        {
                            "id": "b",
                            "type": "polygonlabels",
                            **size,
                            "value": {
                                "points": [[40, 30], [70, 30], [70, 70], [40, 70]],
                                "polygonlabels": ["bline"],
                            },
                        },
                        {
                            "id": "c",
                            "type": "brushlabels",
                            **size,
                            "value": {
                                "format": "rle",
                                "rle": ls_brush_rle(rgba.ravel()),
                                "brushlabels": ["pleura"],
                            },
                        },
                        {"id": "c", "type": "number", "value": {"number": 70}},
                    ]
                },
            ],
        },
        {
            "id": 2,
            "data": {"image": "http://host/data/local-files/?d=x%2Fp07_b.png"},
            "annotations": [{"result": []}],
        },
        {"id": 3, "data": {"image": "/data/upload/1/zzz.png"}, "annotations": []},
    ]
    (root / "export.json").write_text(json.dumps(tasks))
    return root / "export.json", brush


def test_labelstudio(tmp_path):
    export, brush = _ls(tmp_path / "ls")
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        out = run_import(
            "labelstudio",
            export,
            tmp_path / "ds",
            images=tmp_path / "ls" / "imgs",
            patient_regex=r"^(?P<patient>p\d+)_",
        )
    assert any("1 task(s) without" in str(r.message) for r in rec)
    ds = load_dataset(out)
    assert ds.classes == ("bline", "pleura") and [i.id for i in ds.items] == ["p07_a", "p07_b"]
    assert ds.patients() == ["p07"]
    bl = np.zeros((10, 20), np.uint8)
    bl[1:6, 2:11] = 40  # rating 2 of 5; polygon x 2..10, y 1..5
    bl[3:8, 8:15] = 100  # later region without confidence wins the overlap
    np.testing.assert_array_equal(_conf(ds, "p07_a", "bline"), bl)
    np.testing.assert_array_equal(_conf(ds, "p07_a", "pleura"), brush * 70)
    assert ds.item("p07_b").confidence == {}


def test_labelstudio_errors(tmp_path):
    export, _ = _ls(tmp_path / "ls")
    with pytest.raises(ImportLayoutError, match="pass images=DIR"):
        run_import("labelstudio", export, tmp_path / "ds")
    tasks = json.loads(export.read_text())
    tasks[0]["annotations"][1]["result"][1]["value"]["rating"] = 9
    export.write_text(json.dumps(tasks))
    with pytest.raises(ImportLayoutError, match=r"rating 9; expected 0\.\.5"):
        run_import("labelstudio", export, tmp_path / "ds", images=tmp_path / "ls" / "imgs")
    tasks[0]["annotations"][1]["result"][1]["value"]["rating"] = 5
    export.write_text(json.dumps(tasks))
    (tmp_path / "ls" / "imgs" / "p07_b.png").unlink()
    with pytest.raises(ImportLayoutError, match=r"p07_b\.png: image missing"):
        run_import("labelstudio", export, tmp_path / "ds", images=tmp_path / "ls" / "imgs")
    assert not (tmp_path / "ds").exists()


# ----- reliability: one-line refusals, nothing written --------------------------------------
def _refused(exc_type: type[Exception], layout: str, src: Path, dst: Path, **opts) -> str:
    """Run an import that must fail: one-line message, nothing at ``dst``, no temp folder."""
    with pytest.raises(exc_type) as err:
        run_import(layout, src, dst, **opts)
    msg = str(err.value)
    assert "\n" not in msg, msg
    assert not dst.exists()
    assert [p.name for p in dst.parent.iterdir() if p.name.startswith(f".{dst.name}.")] == []
    return msg


def _secret(tmp_path: Path, name: str = "secret.png", shape=(20, 24)) -> Path:
    """A file outside every source folder that an import must never copy."""
    return _save(tmp_path / "outside" / name, np.full(shape, 7, np.uint8))


# ----- path traversal ------------------------------------------------------------------------
def test_inside_helper(tmp_path):
    from confseg.importers._common import inside

    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "a.png").write_bytes(b"x")
    _secret(tmp_path)
    (root / "link.png").symlink_to(tmp_path / "outside" / "secret.png")
    (root / "ok.png").symlink_to(root / "sub" / "a.png")  # a link that stays inside is fine
    (root / "outdir").symlink_to(tmp_path / "outside", target_is_directory=True)
    assert inside(root, "sub/a.png", what="w") == root / "sub" / "a.png"
    assert inside(root, "sub/../sub/a.png", what="w").resolve() == (root / "sub/a.png").resolve()
    assert inside(root, "ok.png", what="w") == root / "ok.png"
    assert inside(root, "sub\\a.png", what="w") == root / "sub" / "a.png"
    for bad in ("../outside/secret.png", "sub/../../outside/secret.png", "..\\outside\\secret.png",
                str(tmp_path / "outside" / "secret.png"), "/etc/passwd", "C:\\x.png", "C:x.png",
                "link.png", "outdir/secret.png", "", ".", "a\x00b.png"):
        with pytest.raises(ImportLayoutError, match=r"^w: ") as err:
            inside(root, bad, what="w")
        assert "\n" not in str(err.value), bad


@pytest.mark.parametrize("kind", ["dotdot", "absolute", "nested-dotdot", "symlink"])
def test_cvat_refuses_images_outside_the_image_folder(tmp_path, kind):
    src = _cvat(tmp_path / "cv")
    secret = _secret(tmp_path)
    name = {
        "dotdot": "../../outside/secret.png",
        "absolute": str(secret),
        "nested-dotdot": "sub/../../../outside/secret.png",
        "symlink": "link.png",
    }[kind]
    (src / "images" / "link.png").symlink_to(secret)
    xml = (src / "annotations.xml").read_text().replace('name="p02_f0.png"', f'name="{name}"')
    (src / "annotations.xml").write_text(xml)
    msg = _refused(ImportLayoutError, "cvat", src, tmp_path / "ds")
    assert "<image name=" in msg and repr(name) in msg
    assert "absolute path" in msg if kind == "absolute" else "leads outside" in msg


@pytest.mark.parametrize(
    "ref",
    ["/data/upload/1/link.png", "/data/local-files/?d=imgs%2Flink.png", "/data/upload/1/..",
     "/data/local-files/?d=..%2F..%2Foutside%2Fsecret.png"],
)
def test_labelstudio_refuses_images_outside_the_image_folder(tmp_path, ref):
    export, _ = _ls(tmp_path / "ls")
    secret = _secret(tmp_path, shape=(10, 20))
    (tmp_path / "ls" / "imgs" / "link.png").symlink_to(secret)
    tasks = json.loads(export.read_text())
    tasks[1]["data"]["image"] = ref
    export.write_text(json.dumps(tasks))
    msg = _refused(ImportLayoutError, "labelstudio", export, tmp_path / "ds",
                   images=tmp_path / "ls" / "imgs")
    assert "task #1" in msg  # the entry is named
    # a URL is matched by base name only: '..' in it never reaches outside images=
    assert "leads outside" in msg or "image missing" in msg


@pytest.mark.parametrize("which", ["label", "image", "image-folder"])
def test_nnunet_refuses_links_out_of_the_source(tmp_path, which):
    src = tmp_path / "n"
    _nnunet(src)
    outside = tmp_path / "outside"
    outside.mkdir()
    if which == "image-folder":
        (src / "imagesTr").rename(outside / "imagesTr")
        (src / "imagesTr").symlink_to(outside / "imagesTr", target_is_directory=True)
    else:
        folder, name = {"label": ("labelsTr", "p02_f0.png"), "image": ("imagesTr",
                                                                       "p02_f0_0000.png")}[which]
        (src / folder / name).rename(outside / name)
        (src / folder / name).symlink_to(outside / name)
    msg = _refused(ImportLayoutError, "nnunet", src, tmp_path / "ds")
    assert "leads outside" in msg


@pytest.mark.parametrize("which", ["video", "csv"])
def test_covid_blues_refuses_links_out_of_the_source(tmp_path, which):
    src = _covid(tmp_path / "cb")
    outside = tmp_path / "outside"
    outside.mkdir()
    name = "lus_videos/patient_3_L1.mp4" if which == "video" else "severity.csv"
    (src / name).rename(outside / Path(name).name)
    (src / name).symlink_to(outside / Path(name).name)
    msg = _refused(ImportLayoutError, "covid-blues", src, tmp_path / "ds")
    assert "leads outside" in msg and Path(name).name in msg


@pytest.mark.parametrize("which", ["image", "mask", "case-folder"])
def test_multirater_refuses_links_out_of_the_source(tmp_path, which):
    src = tmp_path / "q"
    _multirater(src)
    outside = tmp_path / "outside"
    outside.mkdir()
    if which == "case-folder":
        (src / "case02").rename(outside / "case02")
        (src / "case02").symlink_to(outside / "case02", target_is_directory=True)
    else:
        name = "image.png" if which == "image" else "seg02.png"
        (src / "case02" / name).rename(outside / name)
        (src / "case02" / name).symlink_to(outside / name)
    msg = _refused(ImportLayoutError, "multirater", src, tmp_path / "ds")
    assert "leads outside" in msg


@pytest.mark.parametrize("which", ["image", "mask"])
def test_lus_cs541_refuses_links_out_of_the_source(tmp_path, which):
    src = _lus(tmp_path / "lus")
    outside = tmp_path / "outside"
    outside.mkdir()
    rel = {"image": "image/din-01-L-1-V-frame0.jpg",
           "mask": "mask/pleural_line/din-01-L-1-V-frame0-pleural_line.jpg"}[which]
    (src / rel).rename(outside / Path(rel).name)
    (src / rel).symlink_to(outside / Path(rel).name)
    msg = _refused(ImportLayoutError, "lus-cs541", src, tmp_path / "ds")
    assert "leads outside" in msg and Path(rel).name in msg


# ----- sizes from an export: the one pixel limit before allocating -----------------------------
@pytest.mark.parametrize(
    ("old", "new"),
    [
        ('left="10" top="12" width="6" height="4"', 'left="0" top="0" width="1000000" '
         'height="1000000"'),
        ('name="p02_f0.png" width="24" height="20"', 'name="p02_f0.png" width="1000000" '
         'height="1000000"'),
    ],
    ids=["mask", "image"],
)
def test_cvat_huge_sizes_refused_before_allocating(tmp_path, old, new):
    src = _cvat(tmp_path / "cv")
    xml = (src / "annotations.xml").read_text()
    assert old in xml
    (src / "annotations.xml").write_text(xml.replace(old, new))
    msg = _refused(ImportLayoutError, "cvat", src, tmp_path / "ds")
    assert "1000000x1000000 = 1,000,000 Mpixel, above the limit of 50 Mpixel" in msg
    assert "CONFSEG_MAX_IMAGE_PIXELS" in msg


def test_labelstudio_huge_sizes_refused_before_allocating(tmp_path):
    export, _ = _ls(tmp_path / "ls")
    tasks = json.loads(export.read_text())
    res = tasks[0]["annotations"][1]["result"]
    res[0]["original_width"] = res[0]["original_height"] = 1_000_000
    export.write_text(json.dumps(tasks))
    imgs = tmp_path / "ls" / "imgs"
    msg = _refused(ImportLayoutError, "labelstudio", export, tmp_path / "ds", images=imgs)
    assert "above the limit" in msg and "region 'a'" in msg
    # a brush stream whose header claims 2**32 - 1 values is refused on the header
    tasks = json.loads(export.read_text())
    res = tasks[0]["annotations"][1]["result"]
    res[0]["original_width"], res[0]["original_height"] = 20, 10
    res[3]["value"]["rle"] = [255, 255, 255, 255, 0, 0, 0, 0]
    export.write_text(json.dumps(tasks))
    msg = _refused(ImportLayoutError, "labelstudio", export, tmp_path / "ds", images=imgs)
    assert "4294967295 values, the image needs 800" in msg


# ----- malformed exports: one line naming the file and the entry, never a traceback -----------
def _ls_case(tasks: list, case: str) -> list | bytes | str:
    res = tasks[0]["annotations"][1]["result"]
    if case == "task-list":
        tasks[0] = [1, 2]
    elif case == "task-number":
        tasks[0] = 5
    elif case == "annotations-object":
        tasks[0]["annotations"] = {"result": []}
    elif case == "annotations-number":
        tasks[0]["annotations"] = 3
    elif case == "annotation-string":
        tasks[0]["annotations"] = ["done"]
    elif case == "result-string":
        tasks[0]["annotations"][1]["result"] = "regions"
    elif case == "result-item-number":
        tasks[0]["annotations"][1]["result"] = [7]
    elif case == "brush-without-rle":
        del res[3]["value"]["rle"]
    elif case == "brush-without-labels":
        del res[3]["value"]["brushlabels"]
    elif case == "numeric-labels":
        res[0]["value"]["polygonlabels"] = [3]
    elif case == "labels-string":
        res[0]["value"]["polygonlabels"] = "bline"
    elif case == "value-number":
        res[0]["value"] = 5
    elif case == "type-list":
        res[0]["type"] = ["polygonlabels"]
    elif case == "size-text":
        res[0]["original_width"] = "wide"
    elif case == "size-negative":
        res[0]["original_width"] = -20
    elif case == "size-infinite":
        return json.dumps(tasks).replace('"original_width": 20', '"original_width": Infinity', 1)
    elif case == "points-nan":
        return json.dumps(tasks).replace("[10, 10]", "[NaN, 10]", 1)
    elif case == "points-not-pairs":
        res[0]["value"]["points"] = [[1, 2, 3]] * 3
    elif case == "rle-text":
        res[3]["value"]["rle"] = "abc"
    elif case == "rle-floats":
        res[3]["value"]["rle"] = [1.5, 2.5]
    elif case == "rating-text":
        res[1]["value"]["rating"] = "five"
    elif case == "not-json":
        return "[{"
    elif case == "not-utf8":
        return b"\xff\xfe\x00["
    elif case == "top-level-object":
        return json.dumps({"tasks": tasks})
    return tasks


LS_CASES = ["task-list", "task-number", "annotations-object", "annotations-number",
            "annotation-string", "result-string", "result-item-number", "brush-without-rle",
            "brush-without-labels", "numeric-labels", "labels-string", "value-number",
            "type-list", "size-text", "size-negative", "size-infinite", "points-nan",
            "points-not-pairs", "rle-text", "rle-floats", "rating-text", "not-json",
            "not-utf8", "top-level-object"]


@pytest.mark.parametrize("case", LS_CASES)
def test_labelstudio_malformed_export(tmp_path, case):
    export, _ = _ls(tmp_path / "ls")
    out = _ls_case(json.loads(export.read_text()), case)
    if isinstance(out, bytes):
        export.write_bytes(out)
    else:
        export.write_text(out if isinstance(out, str) else json.dumps(out))
    msg = _refused(ImportLayoutError, "labelstudio", export, tmp_path / "ds",
                   images=tmp_path / "ls" / "imgs")
    assert str(export) in msg
    if case.startswith(("task", "annotation", "result", "brush", "numeric", "labels", "value",
                        "type", "size", "points", "rle", "rating")):
        assert "task #0" in msg  # the entry is named


NNUNET_CASES = {
    "channel-names-number": {"channel_names": 3},
    "channel-names-empty": {"channel_names": {}},
    "labels-text-values": {"labels": {"background": 0, "pleura": "1"}},
    "labels-float": {"labels": {"background": 0, "pleura": 1.5}},
    "labels-bool": {"labels": {"background": 0, "pleura": True}},
    "labels-list": {"labels": ["background", "pleura"]},
    "labels-empty": {"labels": {}},
    "labels-negative": {"labels": {"background": 0, "pleura": -1}},
    "file-ending-number": {"file_ending": 5},
    "file-ending-unknown": {"file_ending": ".mha"},
    "missing-key": {"file_ending": None},
    "top-level-list": None,
    "not-utf8": b"\xff\xfe{",
    "not-json": b"{labels",
}


@pytest.mark.parametrize("case", list(NNUNET_CASES))
def test_nnunet_malformed_dataset_json(tmp_path, case):
    src = tmp_path / "n"
    _nnunet(src)
    path = src / "dataset.json"
    spec = json.loads(path.read_text())
    change = NNUNET_CASES[case]
    if isinstance(change, bytes):
        path.write_bytes(change)
    elif change is None:
        path.write_text(json.dumps([spec]))
    else:
        spec.update(change)
        path.write_text(json.dumps({k: v for k, v in spec.items() if v is not None}))
    msg = _refused(ImportLayoutError, "nnunet", src, tmp_path / "ds")
    assert str(path) in msg


CVAT_CASES = {
    "not-xml": None,
    "not-utf8": None,
    "width-text": ('width="24" height="20"/>', 'width="wide" height="20"/>'),
    "width-float": ('width="24" height="20"/>', 'width="1e6" height="20"/>'),
    "width-zero": ('width="24" height="20"/>', 'width="0" height="20"/>'),
    "points-text": ('points="2,2;9,2;9,5;2,5"', 'points="a,b;c,d;e,f"'),
    "points-nan": ('points="2,2;9,2;9,5;2,5"', 'points="nan,2;9,2;9,5;2,5"'),
    "z-order-inf": ('z_order="1">', 'z_order="inf">'),
    "mask-left-nan": ('left="10"', 'left="nan"'),
    "mask-width-text": ('width="6"', 'width="six"'),
    "mask-rle-text": ('rle="', 'rle="1, x, '),
    "mask-rle-huge": ('rle="', 'rle="99999999999999999999999, '),
    "confidence-text": (">60<", ">sixty<"),
    "empty-name": ('name="p02_f0.png"', 'name=""'),
    "box-rotation-text": ("<polyline", '<box label="bline" xtl="1" ytl="1" xbr="3" ybr="3" '
                          'rotation="tilted"/><polyline'),
    "box-corner-inf": ("<polyline", '<box label="bline" xtl="1" ytl="1" xbr="inf" ybr="3"/>'
                       "<polyline"),
}


@pytest.mark.parametrize("case", list(CVAT_CASES))
def test_cvat_malformed_export(tmp_path, case):
    src = _cvat(tmp_path / "cv")
    path = src / "annotations.xml"
    xml = path.read_text()
    if case == "not-xml":
        path.write_text("this is not <xml")
    elif case == "not-utf8":
        path.write_bytes(xml.replace("pleura", "pl\xe9ura").encode("latin-1"))
    else:
        old, new = CVAT_CASES[case]
        assert old in xml, case
        path.write_text(xml.replace(old, new, 1))
    msg = _refused(ImportLayoutError, "cvat", src, tmp_path / "ds")
    assert str(path) in msg


def _covid_case(src: Path, case: str) -> Path:
    sev, clin = src / "severity.csv", src / "clinical_variables.csv"
    if case == "severity-not-utf8":
        sev.write_bytes(sev.read_text().replace("B-lines\n", "B-lin\xe9es\n").encode("latin-1"))
        return sev
    if case == "clinical-not-utf8":
        clin.write_bytes(clin.read_bytes() + "12,caf\xe9\n".encode("latin-1"))
        return clin
    if case == "severity-short-row":
        sev.write_text(sev.read_text() + "patient_3_L1,2.0\n")
        return sev
    if case == "clinical-short-row":
        clin.write_text(clin.read_text() + "7\n")
        return clin
    if case == "clinical-long-row":
        lines = clin.read_text().splitlines()
        clin.write_text("\n".join([*lines, lines[1] + ",extra,cells"]) + "\n")
        return clin
    if case == "patient-id-infinite":
        clin.write_text(clin.read_text().replace("\n12,", "\ninf,", 1))
        return clin
    if case == "patient-id-text":
        clin.write_text(clin.read_text().replace("\n12,", "\ntwelve,", 1))
        return clin
    if case == "severity-no-column":
        sev.write_text(sev.read_text().replace("video_file", "video", 1))
        return sev
    if case == "severity-huge-field":
        sev.write_text(sev.read_text() + 'patient_3_L1,"' + "x" * 200_000 + '",,,\n')
        return sev
    raise AssertionError(case)


COVID_CASES = ["severity-not-utf8", "clinical-not-utf8", "severity-short-row",
               "clinical-short-row", "clinical-long-row", "patient-id-infinite",
               "patient-id-text", "severity-no-column", "severity-huge-field"]


@pytest.mark.parametrize("case", COVID_CASES)
def test_covid_blues_malformed_csv(tmp_path, case):
    src = _covid(tmp_path / "cb")
    path = _covid_case(src, case)
    msg = _refused(ImportLayoutError, "covid-blues", src, tmp_path / "ds")
    assert str(path) in msg
    if "row" in case:
        assert "line " in msg  # names the entry
