import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from confseg.data import DatasetWriter, load_dataset
from confseg.errors import ConfsegError, DatasetError

from conftest import write_tiny_dataset


def _edit_json(root: Path, fn) -> None:
    p = root / "dataset.json"
    obj = json.loads(p.read_text())
    fn(obj)
    p.write_text(json.dumps(obj))


def test_round_trip_keeps_values_and_extra_keys(tmp_path):
    root = tmp_path / "ds"
    conf = np.zeros((8, 10), np.float32)
    conf[2:4, 3:6] = 0.6
    with DatasetWriter(root, name="x", classes=["a", "b"]) as w:
        w.add(item_id="i1", patient="p1", view="L1", day=2, image=np.full((8, 10), 7, np.uint8),
              confidence={"a": conf}, severity=2.5)
    ds = load_dataset(root)
    it = ds.item("i1")
    assert (it.patient, it.view, it.day, it.extra) == ("p1", "L1", 2, {"severity": 2.5})
    c = ds.read_confidence_stack(it)
    assert c.shape == (2, 8, 10) and c.dtype == np.float32
    assert np.isclose(c[0, 2, 3], 0.6) and c[1].max() == 0  # class b unmarked -> zeros
    assert np.asarray(Image.open(root / it.confidence["a"])).max() == 60
    ds.save()  # re-save keeps the extra key
    assert load_dataset(root).item("i1").extra == {"severity": 2.5}


def test_writer_leaves_nothing_on_failure(tmp_path):
    root = tmp_path / "ds"
    with pytest.raises(RuntimeError), DatasetWriter(root, name="x", classes=["a"]) as w:
        w.add(item_id="i1", patient="p", image=np.zeros((4, 4), np.uint8))
        raise RuntimeError("boom")
    assert not root.exists()
    assert list(tmp_path.iterdir()) == []


def test_writer_refuses_existing_folder_unless_overwrite(tmp_path, tiny_dataset):
    with pytest.raises(ConfsegError, match=r"already exists.*--overwrite"):
        DatasetWriter(tiny_dataset, name="x", classes=["a"])
    with DatasetWriter(tiny_dataset, name="new", classes=["a"], overwrite=True) as w:
        w.add(item_id="z", patient="p", image=np.zeros((4, 4), np.uint8))
    assert load_dataset(tiny_dataset).name == "new"


# ----- one test per validation error the issue names -------------------------------------
def test_missing_file(tiny_dataset):
    os.remove(tiny_dataset / "confidence" / "a" / "p0_0.png")
    with pytest.raises(DatasetError, match=r"confidence/a/p0_0\.png: file named by item 'p0_0' "
                                           r"is missing; restore it or fix dataset.json"):
        load_dataset(tiny_dataset)


def test_corrupt_image(tiny_dataset):
    (tiny_dataset / "images" / "p1_0.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    with pytest.raises(DatasetError, match=r"images/p1_0\.png: cannot decode image .*re-export"):
        load_dataset(tiny_dataset)


def test_size_mismatch(tiny_dataset):
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(tiny_dataset / "confidence/b/p2_1.png")
    with pytest.raises(DatasetError, match=r"confidence/b/p2_1\.png: size 10x10 differs from "
                                           r"image images/p2_1\.png \(40x32\); resample"):
        load_dataset(tiny_dataset)


def test_value_above_100(tiny_dataset):
    Image.fromarray(np.full((32, 40), 255, np.uint8)).save(tiny_dataset / "confidence/a/p0_1.png")
    with pytest.raises(DatasetError, match=r"p0_1\.png: confidence value 255 > 100; maps hold "
                                           r"percent"):
        load_dataset(tiny_dataset)


def test_non_png_confidence(tiny_dataset):
    Image.fromarray(np.zeros((32, 40), np.uint8)).save(tiny_dataset / "confidence/a/p0_0.jpg")
    _edit_json(tiny_dataset, lambda o: o["items"][0]["confidence"].update(
        a="confidence/a/p0_0.jpg"))
    with pytest.raises(DatasetError, match=r"p0_0\.jpg: confidence maps must be lossless PNG"):
        load_dataset(tiny_dataset)


def test_unknown_class(tiny_dataset):
    _edit_json(tiny_dataset, lambda o: o["items"][3]["confidence"].update(
        c="confidence/a/p1_1.png"))
    with pytest.raises(DatasetError, match=r"item 'p1_1' has confidence for unknown class 'c'; "
                                           r"add it to 'classes'"):
        load_dataset(tiny_dataset)


def test_duplicate_id(tiny_dataset):
    _edit_json(tiny_dataset, lambda o: o["items"][1].update(id="p0_0"))
    with pytest.raises(DatasetError, match=r"duplicate item id 'p0_0'; ids must be unique"):
        load_dataset(tiny_dataset)


def test_malformed_json(tiny_dataset):
    (tiny_dataset / "dataset.json").write_text('{"name": "x", "classes": [')
    with pytest.raises(DatasetError, match=r"dataset\.json: not valid JSON \(line 1, column "):
        load_dataset(tiny_dataset)


@pytest.mark.parametrize("mutate,msg", [
    (lambda o: o.pop("items"), "missing required key 'items'"),
    (lambda o: o.update(classes="a"), "'classes' must be a list"),
    (lambda o: o["items"][0].pop("patient"), r"items\[0\]: missing required key 'patient'"),
    (lambda o: o["items"][0].update(day="monday"), "'day' must be an integer"),
    (lambda o: o["items"][0].update(image="../../etc/passwd"), "leaves the dataset folder"),
    (lambda o: o.update(classes=["a", "a"]), "duplicate names"),
])
def test_malformed_structure(tiny_dataset, mutate, msg):
    _edit_json(tiny_dataset, mutate)
    with pytest.raises(DatasetError, match=msg):
        load_dataset(tiny_dataset)


def test_missing_folder_and_json(tmp_path):
    with pytest.raises(DatasetError, match="dataset folder not found"):
        load_dataset(tmp_path / "nope")
    with pytest.raises(DatasetError, match=r"dataset\.json: missing; .*confseg import"):
        load_dataset(tmp_path)


def test_errors_are_one_line(tiny_dataset):
    os.remove(tiny_dataset / "images" / "p0_0.png")
    with pytest.raises(DatasetError) as exc:
        load_dataset(tiny_dataset)
    assert "\n" not in str(exc.value)


def test_raters_ignore_and_rgb(tmp_path):
    root = write_tiny_dataset(tmp_path / "r", raters=3, ignore=True, rgb=True)
    ds = load_dataset(root)
    assert ds.raters() == ["r1", "r2", "r3"]
    it = ds.items[0]
    r = ds.read_rater(it, "r2", "a")
    assert set(np.unique(r)) <= {0.0, 1.0}
    assert ds.read_ignore(it)[:, :2].all() and not ds.read_ignore(it)[:, 2:].any()
    assert ds.read_image(it).shape == (32, 40, 3)


def test_image_size_matches_decoded_shape(tmp_path):
    ds = load_dataset(write_tiny_dataset(tmp_path / "rgb", rgb=True, size=(30, 44)))
    for it in ds.items:
        assert ds.image_size(it) == ds.read_image(it).shape[:2] == (30, 44)


def test_writer_overwrite_refuses_inputs_and_foreign_folders(tmp_path):
    src = write_tiny_dataset(tmp_path / "src")
    with pytest.raises(ConfsegError, match=r"is \(or holds\) the input"):
        DatasetWriter(tmp_path, name="x", classes=["a"], overwrite=True, inputs=[src])
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("x")
    with pytest.raises(ConfsegError, match="not a dataset folder; --overwrite only replaces"):
        DatasetWriter(foreign, name="x", classes=["a"], overwrite=True)
    with DatasetWriter(src, name="again", classes=["a"], overwrite=True) as w:  # a dataset: ok
        w.add(item_id="i", patient="p", image=np.zeros((4, 4), np.uint8))
    assert load_dataset(src).name == "again" and (foreign / "keep.txt").exists()


def test_written_dataset_honours_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        root = write_tiny_dataset(tmp_path / "perm")
    finally:
        os.umask(old)
    assert (root.stat().st_mode & 0o777) == 0o755


def test_off_scale_levels_warn_or_refuse_with_strict(tiny_dataset, caplog):
    Image.fromarray(np.full((32, 40), 33, np.uint8)).save(tiny_dataset / "confidence/a/p0_1.png")
    with caplog.at_level("WARNING", logger="confseg"):
        load_dataset(tiny_dataset)
    assert "1 confidence map(s) hold levels that are not on the confidence scale" in caplog.text
    assert "p0_1.png has [33]" in caplog.text
    with pytest.raises(DatasetError, match=r"not on the confidence scale .*p0_1\.png has \[33\]"):
        load_dataset(tiny_dataset, strict=True)
