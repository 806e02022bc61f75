"""The bad-input corpus: every user mistake is one ``error:`` line, exit 2, nothing left behind.

Each case builds its broken input from tiny fixtures, runs the real CLI entry point
(:func:`confseg.cli.main`, in-process for speed) and checks: exit status 2, exactly one line
with ``error:`` that matches what the case names (the file or the value), no traceback, and
no file created or removed anywhere under the case's folder.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import struct
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from confseg.cli import main
from confseg.config import TrainConfig
from confseg.workflows import train_and_evaluate

from conftest import write_tiny_dataset

FAST = ["--model", "fpn-resnet18", "--size", "64", "--batch-size", "2", "--k", "3",
        "--epochs", "1", "--quiet"]


# ----- fixtures ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def base(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("corpus")
    ds = write_tiny_dataset(root / "ds", patients=4, per_patient=2, size=(40, 56))
    run = train_and_evaluate(TrainConfig(data=str(ds), out=str(root / "run"), model="fpn-resnet18",
                                         size=64, batch_size=2, k=3, epochs=1), quiet=True)
    return {"ds": ds, "run": run.root}


class Case:
    """A folder to break things in: copies of the fixtures on demand."""

    def __init__(self, root: Path, base: dict[str, Path]) -> None:
        self.root = root
        self.base = base

    def ds(self, name: str = "ds") -> Path:
        dst = self.root / name
        if not dst.exists():
            shutil.copytree(self.base["ds"], dst)
        return dst

    def run(self) -> Path:
        dst = self.root / "run"
        if not dst.exists():
            shutil.copytree(self.base["run"], dst)
            cfg = json.loads(json.dumps(TrainConfig.load(dst / "config.yaml").to_dict()))
            cfg.update(data=str(self.ds()), out=str(dst))
            TrainConfig.from_dict(cfg).save(dst / "config.yaml")
        return dst

    def edit_json(self, ds: Path, fn: Callable[[dict], object]) -> Path:
        obj = json.loads((ds / "dataset.json").read_text())
        fn(obj)
        (ds / "dataset.json").write_text(json.dumps(obj))
        return ds

    def file(self, name: str, data: bytes | str = b"") -> Path:
        p = self.root / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data.encode() if isinstance(data, str) else data)
        return p


def _bomb_png(path: Path, width: int = 20000, height: int = 10000) -> Path:
    """A tiny valid PNG whose header claims ``width`` x ``height`` pixels."""
    Image.fromarray(np.zeros((1, 1), np.uint8)).save(path)
    raw = bytearray(path.read_bytes())
    ihdr = raw[12:29]  # b"IHDR" + 13 bytes of data
    ihdr[4:12] = struct.pack(">II", width, height)
    raw[12:29] = ihdr
    raw[29:33] = struct.pack(">I", zlib.crc32(bytes(ihdr)) & 0xFFFFFFFF)
    path.write_bytes(bytes(raw))
    return path


def _item0(c: Case) -> tuple[Path, dict]:
    ds = c.ds()
    return ds, json.loads((ds / "dataset.json").read_text())["items"][0]


# ----- the corpus: (id, builds argv in a Case, regex the error line must match) ----------------
def _ds_json(mut: Callable[[dict], object]) -> Callable[[Case], list[str]]:
    return lambda c: ["info", str(c.edit_json(c.ds(), mut))]


def _replace_map(make: Callable[[Case, Path], None]) -> Callable[[Case], list[str]]:
    def build(c: Case) -> list[str]:
        ds, it = _item0(c)
        make(c, ds / it["confidence"]["a"])
        return ["info", str(ds)]
    return build


def _train(*extra: str, ds: Callable[[Case], Path] | None = None) -> Callable[[Case], list[str]]:
    def build(c: Case) -> list[str]:
        data = ds(c) if ds else c.ds()
        args = [a.replace("{tmp}", str(c.root)).replace("{ds}", str(data)) for a in extra]
        out = ["--out", str(c.root / "out")] if "--out" not in args else []
        return ["train", str(data), *FAST, *out, *args]
    return build


def _config(text: str) -> Callable[[Case], list[str]]:
    def build(c: Case) -> list[str]:
        cfg = c.file("cfg.yaml", text.replace("{ds}", str(c.ds())).replace("{tmp}", str(c.root)))
        return ["train", "--config", str(cfg), "--quiet"]
    return build


def _resume(break_run: Callable[[Path], None]) -> Callable[[Case], list[str]]:
    def build(c: Case) -> list[str]:
        run = c.run()
        break_run(run)
        return ["train", "--resume", str(run), "--quiet"]
    return build


def _set_status(run: Path, status: str) -> None:
    obj = json.loads((run / "run.json").read_text())
    obj["status"] = status
    (run / "run.json").write_text(json.dumps(obj))


class _Payload:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def _crafted(run: Path) -> None:
    _set_status(run, "running")
    state = torch.load(run / "checkpoints/last.ckpt", map_location="cpu", weights_only=True)
    state["x"] = _Payload()
    torch.save(state, run / "checkpoints/last.ckpt")


def _truncated(run: Path) -> None:
    _set_status(run, "running")
    p = run / "checkpoints/last.ckpt"
    p.write_bytes(p.read_bytes()[:1000])


def _predict_second_bad(c: Case) -> list[str]:
    good = c.ds() / "images" / "p0_0.png"
    bad = c.file("bad.png", b"\x89PNG\r\n\x1a\nnot really")
    return ["predict", str(c.run()), str(good), str(bad), "--out", str(c.root / "p"), "--quiet"]


def _member(c: Case, name: str, *, classes: tuple[str, ...] | None = None,
            fold: int | None = None) -> Path:
    """A copy of the run as another ensemble member (other classes, or another test fold)."""
    dst = c.root / name
    shutil.copytree(c.run(), dst)
    cfg = TrainConfig.load(dst / "config.yaml")
    cfg.replace(out=str(dst), **({} if fold is None else {"fold": fold})).save(dst / "config.yaml")
    if classes is not None:
        from confseg.models.spec import SPEC_KEY

        for ckpt in (dst / "checkpoints").glob("*.ckpt"):
            state = torch.load(ckpt, map_location="cpu", weights_only=True)
            state[SPEC_KEY] = {**state[SPEC_KEY], "class_names": list(classes)}
            torch.save(state, ckpt)
    return dst


def _other_ds(c: Case, classes=("a", "b")) -> Path:
    return write_tiny_dataset(c.root / "other", patients=4, per_patient=1, classes=classes)


CASES: list[tuple[str, Callable[[Case], list[str]], str]] = [
    # datasets (info)
    ("ds-missing", lambda c: ["info", str(c.root / "nope")], r"nope: dataset folder not found"),
    ("ds-is-file", lambda c: ["info", str(c.file("f.txt", "x"))], r"f\.txt: is a file"),
    ("ds-no-json", lambda c: ["info", str(c.root)], r"dataset\.json: missing"),
    ("ds-bad-json", lambda c: ["info", str(c.file("d/dataset.json", "{").parent)],
     r"dataset\.json: not valid JSON"),
    ("ds-not-utf8", lambda c: ["info", str(c.file("d/dataset.json", b"\xff\xfe{").parent)],
     r"dataset\.json: not UTF-8"),
    ("ds-top-list", lambda c: ["info", str(c.file("d/dataset.json", "[]").parent)],
     r"top level must be a JSON object"),
    ("ds-no-items", _ds_json(lambda o: o.pop("items")), r"missing required key 'items'"),
    ("ds-classes-str", _ds_json(lambda o: o.update(classes="a")), r"'classes' must be a list"),
    ("ds-dup-classes", _ds_json(lambda o: o.update(classes=["a", "a"])), r"duplicate names"),
    ("ds-image-int", _ds_json(lambda o: o["items"][0].update(image=123)),
     r"items\[0\]: 'image' must be a file path .* got 123"),
    ("ds-ignore-bool", _ds_json(lambda o: o["items"][0].update(ignore=True)),
     r"items\[0\]: 'ignore' must be a file path"),
    ("ds-rater-number", _ds_json(lambda o: o["items"][0].update(raters={"r": {"a": 5}})),
     r"'raters' must map rater -> class -> file path"),
    ("ds-day-text", _ds_json(lambda o: o["items"][0].update(day="monday")),
     r"'day' must be an integer"),
    ("ds-patient-list", _ds_json(lambda o: o["items"][0].update(patient=["p"])),
     r"'patient' must be a string"),
    ("ds-traversal", _ds_json(lambda o: o["items"][0].update(image="../../etc/passwd")),
     r"leaves the dataset folder"),
    ("ds-absolute", _ds_json(lambda o: o["items"][0].update(image="/etc/passwd")),
     r"leaves the dataset folder"),
    ("ds-dup-id", _ds_json(lambda o: o["items"][1].update(id=o["items"][0]["id"])),
     r"duplicate item id"),
    ("ds-dup-scale", _ds_json(lambda o: o.update(confidence_scale=[{"value": 60}, {"value": 60}])),
     r"confidence_scale has the value 60 twice"),
    ("ds-scale-zero", _ds_json(lambda o: o.update(confidence_scale=[{"value": 0}])),
     r"confidence_scale\[0\]\.value=0"),
    ("ds-unknown-class", _ds_json(lambda o: o["items"][0]["confidence"].update(c="x.png")),
     r"unknown class 'c'"),
    ("ds-no-image-no-video", _ds_json(lambda o: o["items"][0].pop("image")),
     r"has neither 'image' nor 'video'"),
    ("ds-missing-file", lambda c: (os.remove(c.ds() / "images/p0_0.png"), ["info", str(c.ds())])[1],
     r"images/p0_0\.png: file named by item 'p0_0' is missing"),
    ("ds-corrupt-image",
     lambda c: ((c.ds() / "images/p0_0.png").write_bytes(b"\x89PNG\r\n\x1a\nxx"),
                ["info", str(c.ds())])[1], r"images/p0_0\.png: cannot decode image"),
    ("ds-size-mismatch", _replace_map(
        lambda c, p: Image.fromarray(np.zeros((10, 10), np.uint8)).save(p)),
     r"size 10x10 differs from image"),
    ("ds-conf-255", _replace_map(
        lambda c, p: Image.fromarray(np.full((40, 56), 255, np.uint8)).save(p)),
     r"confidence value 255 > 100"),
    ("ds-conf-jpeg-named-png", _replace_map(
        lambda c, p: Image.fromarray(np.full((40, 56), 60, np.uint8)).save(p, format="JPEG")),
     r"JPEG"),
    ("ds-image-bomb",
     lambda c: (_bomb_png(c.ds() / "images/p0_0.png"), ["info", str(c.ds())])[1],
     r"p0_0\.png: .*limit"),
    ("ds-clinical-not-utf8",
     lambda c: ((c.ds() / "clinical.csv").write_bytes(b"patient,day\n\xff\xfe,1\n"),
                ["info", str(c.ds())])[1], r"clinical\.csv: not UTF-8"),
    ("ds-clinical-short-row",
     lambda c: ((c.ds() / "clinical.csv").write_text("patient,day,spo2\np0,0\n"),
                ["info", str(c.ds())])[1], r"clinical\.csv: line 2 has a different number"),
    # splits
    ("split-k-text", lambda c: ["split", str(c.ds()), "--k", "x"], r"--k 'x'"),
    ("split-k-one", lambda c: ["split", str(c.ds()), "--k", "1"], r"k=1: need at least 2"),
    ("split-k-many", lambda c: ["split", str(c.ds()), "--k", "99"], r"k=99 folds but only 4"),
    ("split-seed-text", lambda c: (
        (c.ds() / "splits.json").write_text('{"folds": [["p0"], ["p1"], ["p2", "p3"]], '
                                            '"seed": "x"}'),
        _train()(c))[1],
     r"splits\.json: 'seed' must be a whole number"),
    # train: options
    ("train-model", _train("--model", "fpn-resnet999"), r"unknown model 'fpn-resnet999'"),
    ("train-strategy", _train("--strategy", "median"), r"unknown label strategy 'median'"),
    ("train-threshold-ambiguous", _train("--strategy", "threshold:1.5"), r"1\.5 is ambiguous"),
    ("train-size", _train("--size", "50"), r"size=50; use a multiple of 32"),
    ("train-epochs-zero", _train("--epochs", "0"), r"epochs=0; must be >= 1"),
    ("train-epochs-text", _train("--epochs", "ten"), r"--epochs"),
    ("train-lr", _train("--lr", "-1"), r"lr=-1\.0; must be > 0"),
    ("train-accelerator", _train("--accelerator", "tpu"), r"accelerator='tpu'"),
    ("train-devices-text", _train("--devices", "many"), r"--devices 'many'"),
    ("train-devices-zero", _train("--devices", "0"), r"devices=0"),
    ("train-workers", _train("--num-workers", "-1"), r"num_workers=-1"),
    ("train-weights", _train("--encoder-weights", "{tmp}/none.pt"), r"none\.pt.*not found"),
    ("train-fold", _train("--fold", "7"), r"fold 7 does not exist"),
    ("train-rater-no-raters", _train("--strategy", "rater"), r"needs rater masks"),
    # train: outputs
    ("train-out-file", lambda c: _train("--out", str(c.file("afile", "x")))(c),
     r"afile: exists and is not a folder"),
    ("train-out-is-data", _train("--out", "{ds}", "--overwrite"), r"is \(or holds\) the input"),
    ("train-out-holds-data", _train("--out", "{tmp}", "--overwrite"),
     r"is \(or holds\) the input"),
    ("train-out-foreign", lambda c: (c.file("notes/x.txt", "keep"),
                                     _train("--out", "{tmp}/notes", "--overwrite")(c))[1],
     r"not a run folder; --overwrite only replaces a run folder"),
    ("train-out-not-empty", lambda c: (c.file("o2/x.txt", "keep"),
                                       _train("--out", "{tmp}/o2")(c))[1],
     r"o2: not empty"),
    # train: config files
    ("config-missing", lambda c: ["train", "--config", str(c.root / "none.yaml")],
     r"none\.yaml: config not found"),
    ("config-yaml", _config("data: [unclosed"), r"cfg\.yaml: not valid YAML"),
    ("config-unknown", _config("data: {ds}\nout: {tmp}/o\nepoch: 3\n"), r"unknown option 'epoch'"),
    ("config-type", _config("data: {ds}\nout: {tmp}/o\nepochs: ten\n"),
     r"cfg\.yaml: epochs='ten': expected int"),
    ("config-list", _config("- a\n- b\n"), r"must be a mapping"),
    # resume
    ("resume-not-run", lambda c: ["train", "--resume", str(c.ds())], r"no config\.yaml"),
    ("resume-finished", _resume(lambda r: None), r"already finished; nothing to resume"),
    ("resume-truncated", _resume(_truncated), r"last\.ckpt: cannot read checkpoint"),
    ("resume-crafted", _resume(_crafted), r"last\.ckpt: holds objects a weights-only load"),
    ("resume-no-ckpt", _resume(lambda r: (_set_status(r, "running"),
                                          os.remove(r / "checkpoints/last.ckpt"))),
     r"last\.ckpt: missing"),
    # evaluate
    ("eval-not-run", lambda c: ["evaluate", str(c.ds())], r"no config\.yaml"),
    ("eval-split", lambda c: ["evaluate", str(c.run()), "--split", "dev"], r"split 'dev'"),
    ("eval-checkpoint", lambda c: ["evaluate", str(c.run()), "--checkpoint", "foo"],
     r"checkpoint 'foo'; choose best or last"),
    ("eval-calibrate-other", lambda c: ["evaluate", str(c.run()), "--data", str(_other_ds(c)),
                                        "--split", "all", "--calibrate", "--quiet"],
     r"--calibrate fits on the run's validation split"),
    ("eval-other-classes", lambda c: ["evaluate", str(c.run()), "--data",
                                      str(_other_ds(c, ("x", "y"))), "--split", "all", "--quiet"],
     r"differ from the run's"),
    ("eval-tta-vertical", lambda c: ["evaluate", str(c.run()), "--tta", "vertical"],
     r"--tta 'vertical': only 'flip' .*never flipped vertically"),
    ("eval-ensemble-not-run", lambda c: ["evaluate", str(c.run()), "--ensemble", str(c.ds()),
                                         "--quiet"], r"ds: no config\.yaml; not a confseg run"),
    ("eval-ensemble-other-fold", lambda c: ["evaluate", str(c.run()), "--ensemble",
                                            str(_member(c, "run2", fold=1)), "--quiet"],
     r"run2: other splits or fold than .*run; .*else use --split all"),
    # predict
    ("predict-ensemble-classes", lambda c: [
        "predict", str(c.run()), str(c.ds() / "images/p0_0.png"), "--out", str(c.root / "p"),
        "--ensemble", str(_member(c, "run2", classes=("x", "y"))), "--quiet"],
     r"run2: predicts classes \['x', 'y'\], not \['a', 'b'\]"),
    ("predict-tta-vertical", lambda c: ["predict", str(c.run()), str(c.ds() / "images/p0_0.png"),
                                        "--out", str(c.root / "p"), "--tta", "vflip"],
     r"--tta 'vflip': only 'flip'"),
    ("predict-missing", lambda c: ["predict", str(c.run()), str(c.root / "no.png"), "--out",
                                   str(c.root / "p")], r"no\.png: file not found"),
    ("predict-second-bad", _predict_second_bad, r"bad\.png: cannot decode image"),
    ("predict-format", lambda c: ["predict", str(c.run()), str(c.ds() / "images/p0_0.png"),
                                  "--out", str(c.root / "p"), "--format", "tiff"],
     r"format 'tiff'"),
    ("predict-level", lambda c: ["predict", str(c.run()), str(c.ds() / "images/p0_0.png"),
                                 "--out", str(c.root / "p"), "--level", "1.5"], r"level=1\.5"),
    ("predict-no-ckpt", lambda c: (shutil.rmtree(c.run() / "checkpoints"),
                                   ["predict", str(c.run()), str(c.ds() / "images/p0_0.png"),
                                    "--out", str(c.root / "p")])[1],
     r"best\.ckpt: checkpoint not found"),
    # import and synth
    ("import-layout", lambda c: ["import", "dicomweb", str(c.root), str(c.root / "o")],
     r"dicomweb"),
    ("import-over-source", lambda c: ["import", "multirater", str(c.ds()), str(c.ds()),
                                      "--overwrite"], r"is \(or holds\) the input"),
    ("synth-out-file", lambda c: ["synth", str(c.file("s", "x")), "--patients", "2"],
     r"s: exists and is not a folder"),
    ("synth-out-cwd", lambda c: ["synth", ".", "--patients", "2", "--overwrite"],
     r"working directory"),
    # annotator
    ("annotate-port", lambda c: ["annotate", str(c.ds()), "--port", "99999"], r"--port 99999"),
    ("annotate-missing", lambda c: ["annotate", str(c.root / "nope")],
     r"nope: dataset folder not found"),
]


def _tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@pytest.mark.parametrize(("case_id", "build", "pattern"), CASES, ids=[c[0] for c in CASES])
def test_bad_input(case_id, build, pattern, base, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    case = Case(tmp_path, base)
    argv = build(case)
    before = _tree(tmp_path)
    base_before = {k: _tree(v) for k, v in base.items()}
    code = main(argv)
    out = capsys.readouterr()
    text = out.out + out.err
    errors = [line for line in text.splitlines() if "error:" in line]
    assert code == 2, text[-2000:]
    assert len(errors) == 1, text[-2000:]
    assert re.search(pattern, errors[0]), errors[0]
    assert "Traceback" not in text
    assert _tree(tmp_path) == before, sorted(_tree(tmp_path) ^ before)
    assert {k: _tree(v) for k, v in base.items()} == base_before
    assert not (tmp_path / "pwned").exists()


def test_corpus_is_large_enough():
    assert len(CASES) + len(API_CASES) >= 60


# ----- the annotator's HTTP API: a clean 4xx with a one-line JSON detail, never a 500 --------
def _png_b64(arr: np.ndarray) -> str:
    import base64
    import io

    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


API_CASES = [
    ("api-unknown-item", "get", "/api/items/nope", None, 404, r"nope"),
    ("api-unknown-class", "get", "/api/items/p0_0/maps/zz", None, 404, r"zz"),
    ("api-traversal", "get", "/api/items/..%2F..%2Fetc/image", None, 404, r""),
    ("api-unknown-rater", "get", "/api/items/p0_0/layers/raters/bob", None, 404, r"bob"),
    ("api-save-not-png", "post", "/api/items/p0_0/save",
     {"maps": {"a": {"png": "bm90IGEgcG5n", "base_version": "x"}}}, 422, r""),
    ("api-save-wrong-size", "post", "/api/items/p0_0/save",
     {"maps": {"a": {"png": _png_b64(np.zeros((3, 3), np.uint8)), "base_version": "x"}}}, 422,
     r""),
    ("api-save-off-scale", "post", "/api/items/p0_0/save",
     {"maps": {"a": {"png": _png_b64(np.full((40, 56), 7, np.uint8)), "base_version": "x"}}},
     422, r""),
    ("api-restore-unknown", "post", "/api/items/p0_0/restore", {"version": "nope"}, 404, r""),
    ("api-status-type", "post", "/api/items/p0_0/status", {"done": "maybe"}, 422, r""),
]


@pytest.mark.parametrize(("case_id", "method", "url", "body", "status", "pattern"), API_CASES,
                         ids=[c[0] for c in API_CASES])
def test_bad_api_request(case_id, method, url, body, status, pattern, base, tmp_path):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from confseg.annotator import create_app

    ds = Case(tmp_path, base).ds()
    before = _tree(ds)
    client = TestClient(create_app(ds), raise_server_exceptions=False)
    r = client.request(method.upper(), url, json=body)
    assert r.status_code == status, r.text
    detail = r.json().get("detail")
    text = detail if isinstance(detail, str) else json.dumps(detail)
    assert "Traceback" not in r.text and re.search(pattern, text), text
    assert {p for p in _tree(ds) if not p.startswith((".annotator", "annotator"))} == before
