"""Ensembles and test-time augmentation: probability averaging, CLI, calibration folder."""

import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from confseg.cli import app
from confseg.config import TrainConfig
from confseg.data import load_dataset
from confseg.errors import CheckpointError, ConfsegError, EvaluationError, RunError
from confseg.evaluation import evaluate_run, fit_temperature
from confseg.inference import Ensemble, Predictor, check_tta, load_predictor
from confseg.models.spec import SPEC_KEY
from confseg.runs import RunFolder
from confseg.training import train

from conftest import write_tiny_dataset


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two tiny runs on one dataset: same splits and fold, different seeds."""
    root = tmp_path_factory.mktemp("ens")
    data = write_tiny_dataset(root / "ds", patients=5, per_patient=2, size=(40, 56))
    out = []
    for seed in (0, 1):
        out.append(train(TrainConfig(data=str(data), out=str(root / f"run{seed}"),
                                     model="fpn-resnet18", size=64, batch_size=4, epochs=1,
                                     k=5, seed=seed), quiet=True))
    return data, out[0], out[1]


def _images(data, n=3):
    return [np.asarray(Image.open(data / "images" / f"p{i}_0.png")) for i in range(n)]


def _tree(root):
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def _copy_run(src, dst, *, classes=None, fold=None):
    shutil.copytree(src, dst)
    cfg = TrainConfig.load(dst / "config.yaml")
    cfg.replace(out=str(dst), **({} if fold is None else {"fold": fold})).save(dst / "config.yaml")
    if classes is not None:
        for ckpt in (dst / "checkpoints").glob("*.ckpt"):
            state = torch.load(ckpt, map_location="cpu", weights_only=True)
            state[SPEC_KEY] = {**state[SPEC_KEY], "class_names": list(classes)}
            torch.save(state, ckpt)
    return dst


# ----- the library ------------------------------------------------------------------------------
def test_ensemble_of_a_run_with_itself_is_the_run(runs):
    data, r1, _ = runs
    imgs = _images(data)
    single = Predictor.from_run(r1, calibrated=False).probs_many(imgs)
    ens = Ensemble.from_runs([r1, r1])
    assert ens.classes == ["a", "b"] and len(ens) == 2 and ens.temperature == 1.0
    for a, b in zip(ens.probs_many(imgs), single, strict=True):
        assert a.dtype == np.float32 and a.shape == (2, 40, 56)
        np.testing.assert_allclose(a, b, atol=1e-6, rtol=0)
    # its logits are the logit of the averaged probability: sigmoid gives it back
    for z, b in zip(ens.logits_many(imgs), single, strict=True):
        np.testing.assert_allclose(torch.sigmoid(z).numpy(), b, atol=1e-6, rtol=0)


def test_ensemble_averages_probabilities_not_logits(runs):
    data, r1, r2 = runs
    imgs = _images(data)
    p1 = Predictor.from_run(r1, calibrated=False).probs_many(imgs)
    p2 = Predictor.from_run(r2, calibrated=False).probs_many(imgs)
    got = Ensemble.from_runs([r1, r2]).probs_many(imgs)
    for g, a, b in zip(got, p1, p2, strict=True):
        np.testing.assert_allclose(g, (a + b) / 2, atol=1e-6, rtol=0)
    assert not np.allclose(p1[0], p2[0], atol=1e-4)  # two different models


def test_members_letterbox_to_their_own_size(runs):
    data, r1, r2 = runs
    imgs = _images(data, 2)
    a = Predictor.from_run(r1, calibrated=False)
    b0 = Predictor.from_run(r2, calibrated=False)
    b = Predictor(b0.model, b0.spec.replace(size=96))  # another input size, same classes
    got = Ensemble([a, b]).probs_many(imgs)
    for g, pa, pb in zip(got, a.probs_many(imgs), b.probs_many(imgs), strict=True):
        assert g.shape == (2, 40, 56)
        np.testing.assert_allclose(g, (pa + pb) / 2, atol=1e-6, rtol=0)


def test_flip_tta_averages_the_mirror_flipped_back(runs):
    data, r1, _ = runs
    img = _images(data, 1)[0]
    p = Predictor.from_run(r1, calibrated=False)
    plain = p.predict(img)
    mirrored = p.predict(np.ascontiguousarray(img[:, ::-1]))[:, :, ::-1]
    for tta in (Ensemble([p], tta="flip"), Ensemble.from_runs([r1], tta="flip")):
        np.testing.assert_allclose(tta.predict(img), (plain + mirrored) / 2, atol=1e-6, rtol=0)
    assert not np.allclose(plain, mirrored, atol=1e-4)  # the flip did something


def test_tta_names(runs):
    assert check_tta(None) is None and check_tta("none") is None and check_tta("FLIP") == "flip"
    for bad in ("vertical", "vflip", "rotate"):
        with pytest.raises(ConfsegError, match=r"only 'flip'.*never flipped vertically"):
            check_tta(bad)
    _, r1, r2 = runs
    assert type(load_predictor([r1])) is Predictor  # one run, no TTA: today's predictor
    assert isinstance(load_predictor([r1], tta="flip"), Ensemble)
    assert isinstance(load_predictor([r1, r2]), Ensemble)


def test_members_must_predict_the_same_classes(runs, tmp_path):
    _, r1, _ = runs
    other = _copy_run(r1, tmp_path / "xy", classes=("x", "y"))
    with pytest.raises(CheckpointError, match=r"xy: predicts classes \['x', 'y'\], not "
                                              r"\['a', 'b'\]"):
        Ensemble.from_runs([r1, other])
    p = Predictor.from_run(r1)
    q = Predictor(p.model, p.spec.replace(class_names=("b", "a")))
    with pytest.raises(CheckpointError, match="member 1"):
        Ensemble([p, q])


def test_temperature_divides_the_logit_of_the_average(runs):
    data, r1, r2 = runs
    imgs = _images(data, 2)
    ens = Ensemble.from_runs([r1, r2])
    hot = ens.with_temperature(2.0)
    for z, p in zip(ens.logits_many(imgs), hot.probs_many(imgs), strict=True):
        np.testing.assert_allclose(p, torch.sigmoid(z / 2.0).numpy(), atol=1e-6, rtol=0)


# ----- evaluation -------------------------------------------------------------------------------
def test_evaluate_ensemble_writes_its_own_folder(runs):
    _data, r1, r2 = runs
    before1, before2 = _tree(r1), _tree(r2)
    r = CliRunner().invoke(app, ["evaluate", str(r1), "--ensemble", str(r2), "--split", "test",
                                 "--quiet"])
    assert r.exit_code == 0, r.output
    dest = r1 / "eval-ensemble-2runs-test-tiny"
    assert f"wrote {dest / 'summary.json'}" in r.output
    s = json.loads((dest / "summary.json").read_text())
    assert s["runs"] == [str(r1), str(r2)] and s["ensemble"] == 2 and s["tta"] is None
    assert s["checkpoint"] == "best" and s["out"] == str(dest)
    assert [m["seed"] for m in s["members"]] == [0, 1]
    assert (dest / "per_case.csv").is_file() and (dest / "reliability_a.png").is_file()
    # the members' own folders are untouched (only the ensemble folder appeared in run1)
    assert _tree(r1) - before1 == {str(p.relative_to(r1)) for p in [dest, *dest.rglob("*")]}
    assert not before1 - _tree(r1) and _tree(r2) == before2


def test_evaluate_tta_is_recorded(runs):
    _, r1, _ = runs
    r = CliRunner().invoke(app, ["evaluate", str(r1), "--tta", "flip", "--quiet"])
    assert r.exit_code == 0, r.output
    s = json.loads((r1 / "eval-tta-flip-test-tiny" / "summary.json").read_text())
    assert s["tta"] == "flip" and s["ensemble"] == 1 and s["runs"] == [str(r1)]
    assert not (r1 / "summary.json").exists()  # the run's own summary is the single model's


def test_single_run_summary_has_no_ensemble_fields(runs, tmp_path):
    _, r1, _ = runs
    s = evaluate_run(r1, out=tmp_path / "e", quiet=True, n_boot=20, examples=0)
    assert not {"ensemble", "runs", "tta"} & set(s)


def test_ensemble_calibration_goes_to_the_ensemble_folder(runs, tmp_path):
    data, r1, r2 = runs
    s = evaluate_run(r1, ensemble=[r2], calibrate=True, tta="flip", n_boot=20, quiet=True,
                     examples=0)
    dest = r1 / "eval-ensemble-2runs-tta-flip-test-tiny"
    assert s["out"] == str(dest)
    cal = json.loads((dest / "calibration.json").read_text())
    assert cal["temperature"] == pytest.approx(s["calibration"]["temperature"])
    assert cal["runs"] == [str(r1), str(r2)] and cal["tta"] == "flip"
    assert not (r1 / "calibration.json").exists() and not (r2 / "calibration.json").exists()
    # the temperature is fitted on the ensemble's validation output (logit of the average)
    ds = load_dataset(data)
    val = RunFolder(r1).items(ds, "val")
    z = Ensemble.from_runs([r1, r2], tta="flip").logits_many([ds.read_image(it) for it in val])
    t = fit_temperature(z, [ds.read_confidence_stack(it) for it in val], [None] * len(val))
    assert cal["temperature"] == pytest.approx(t, rel=1e-6)


def test_ensemble_split_rule(runs, tmp_path):
    data, r1, _ = runs
    other_fold = _copy_run(r1, tmp_path / "fold1", fold=1)
    with pytest.raises(EvaluationError, match=r"other splits or fold.*else use --split all"):
        evaluate_run(r1, ensemble=[other_fold], split="test", quiet=True)
    with pytest.raises(EvaluationError, match="--calibrate needs members that share"):
        evaluate_run(r1, ensemble=[other_fold], split="all", calibrate=True, quiet=True)
    s = evaluate_run(r1, ensemble=[other_fold], split="all", quiet=True, n_boot=20,
                     examples=0, out=tmp_path / "all")
    assert s["ensemble"] == 2 and s["fold"] is None and s["n_images"] == 10
    with pytest.raises(RunError, match=r"ds: no config\.yaml"):
        evaluate_run(r1, ensemble=[data], quiet=True)


# ----- predict ----------------------------------------------------------------------------------
def test_predict_cli_ensemble_with_tta(runs, tmp_path):
    data, r1, r2 = runs
    img_path = data / "images" / "p0_0.png"
    img = np.asarray(Image.open(img_path))
    r = CliRunner().invoke(app, ["predict", str(r1), str(img_path), "--out", str(tmp_path / "p"),
                                 "--ensemble", str(r2), "--tta", "flip", "--quiet"])
    assert r.exit_code == 0, r.output
    prob16 = np.asarray(Image.open(tmp_path / "p" / "p0_0_prob_a.png"))
    expect = Ensemble.from_runs([r1, r2], tta="flip").predict(img)
    np.testing.assert_allclose(prob16 / 65535, expect[0], atol=2e-5)
    mask = np.asarray(Image.open(tmp_path / "p" / "p0_0_mask_b.png"))
    np.testing.assert_array_equal(mask > 0, expect[1] > 0.5)
    assert (tmp_path / "p" / "p0_0_overlay.png").is_file()


def test_predict_applies_an_ensemble_calibration(runs, tmp_path):
    data, r1, r2 = runs
    cal = tmp_path / "cal"
    cal.mkdir()
    (cal / "calibration.json").write_text(json.dumps({"temperature": 2.5}))
    img_path = data / "images" / "p1_0.png"
    r = CliRunner().invoke(app, ["predict", str(r1), str(img_path), "--out", str(tmp_path / "p"),
                                 "--ensemble", str(r2), "--calibration", str(cal),
                                 "--format", "npz", "--quiet"])
    assert r.exit_code == 0, r.output
    got = np.load(tmp_path / "p" / "p1_0_prob.npz")["prob"].astype(np.float32)
    expect = Ensemble.from_runs([r1, r2], temperature=2.5).predict(np.asarray(Image.open(img_path)))
    np.testing.assert_allclose(got, expect, atol=1e-3)  # float16 storage
    r = CliRunner().invoke(app, ["predict", str(r1), str(img_path), "--out", str(tmp_path / "q"),
                                 "--ensemble", str(r2), "--calibration", str(tmp_path)])
    assert r.exit_code == 2 and "calibration.json: not found" in r.output
