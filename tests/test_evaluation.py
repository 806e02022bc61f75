import csv
import json

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from confseg.cli import app
from confseg.evaluation import EvaluationError, evaluate_run, fit_temperature
from confseg.inference import Predictor
from confseg.training import TrainConfig, train

from conftest import write_tiny_dataset


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("ev")
    data = write_tiny_dataset(root / "ds", patients=5, per_patient=2, size=(40, 56))
    run = train(TrainConfig(data=str(data), out=str(root / "run"), model="fpn-resnet18",
                            size=64, batch_size=4, epochs=1, k=5), quiet=True)
    return data, run


def test_fit_temperature_recovers_known_overconfidence():
    rng = np.random.default_rng(0)
    c = rng.uniform(0.05, 0.95, size=(2, 50, 50)).astype(np.float32)
    z = torch.from_numpy(3.0 * np.log(c / (1 - c)))  # logits 3x too sharp
    t = fit_temperature([z], [c], [None])
    assert abs(t - 3.0) < 0.01


def test_evaluate_writes_consistent_summary(trained):
    _data, run = trained
    s = evaluate_run(run, quiet=True, n_boot=200)
    status = json.loads((run / "run.json").read_text())
    assert s["patients"] == sorted(status["patients"]["test"])
    with (run / "per_case.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == s["n_images"] * 2  # one row per image and class
    for cls in ("a", "b"):
        vals = [float(r["dice@any"]) for r in rows if r["class"] == cls]
        m = s["classes"][cls]["dice@any"]
        assert m["mean"] == pytest.approx(np.mean(vals), abs=1e-5)
        assert m["lo"] <= m["mean"] <= m["hi"]
        assert (run / f"reliability_{cls}.png").stat().st_size > 1000
    assert {"dice@0.6", "qubiq", "ece", "aece", "brier", "nll", "hd95",
            "dice_pooled@any"} <= set(s["classes"]["a"])


def test_calibrate_reports_before_after(trained):
    _, run = trained
    s = evaluate_run(run, quiet=True, calibrate=True, n_boot=100)
    cal = json.loads((run / "calibration.json").read_text())
    assert cal["temperature"] == pytest.approx(s["calibration"]["temperature"])
    assert set(s["calibration"]["after"]["a"]) >= {"ece", "nll"}
    # Temperature minimises validation NLL; the calibrated predictor uses it.
    assert Predictor.from_run(run).temperature == pytest.approx(cal["temperature"])


def test_evaluate_errors(trained, tmp_path):
    _data, run = trained
    other = write_tiny_dataset(tmp_path / "other", patients=2, classes=("x", "y"))
    with pytest.raises(EvaluationError, match="only --split all"):
        evaluate_run(run, data=other, quiet=True)
    with pytest.raises(EvaluationError, match="differ from the run's"):
        evaluate_run(run, data=other, split="all", quiet=True)
    with pytest.raises(EvaluationError, match="split 'dev'"):
        evaluate_run(run, split="dev", quiet=True)


def test_evaluate_cli_prints_where_it_wrote(trained):
    _data, run = trained
    r = CliRunner().invoke(app, ["evaluate", str(run), "--split", "val", "--quiet"])
    assert r.exit_code == 0, r.output
    where = run / "eval-val-tiny" / "summary.json"
    assert f"wrote {where}" in r.output and where.is_file()


def test_predict_cli_writes_maps(trained, tmp_path):
    data, run = trained
    img = data / "images" / "p0_0.png"
    r = CliRunner().invoke(app, ["predict", str(run), str(img), "--out", str(tmp_path / "p"),
                                 "--quiet"])
    assert r.exit_code == 0, r.output
    prob16 = np.asarray(Image.open(tmp_path / "p" / "p0_0_prob_a.png"))
    assert prob16.dtype == np.uint16 and prob16.shape == (40, 56)
    expect = Predictor.from_run(run).predict(np.asarray(Image.open(img)))
    np.testing.assert_allclose(prob16 / 65535, expect[0], atol=2e-5)
    mask = np.asarray(Image.open(tmp_path / "p" / "p0_0_mask_a.png"))
    np.testing.assert_array_equal(mask > 0, expect[0] > 0.5)
    assert np.asarray(Image.open(tmp_path / "p" / "p0_0_overlay.png")).shape == (40, 56, 3)
    r = CliRunner().invoke(app, ["predict", str(run), str(img), "--out", str(tmp_path / "q"),
                                 "--format", "npz", "--quiet"])
    z = np.load(tmp_path / "q" / "p0_0_prob.npz")
    assert z["prob"].shape == (2, 40, 56) and list(z["classes"]) == ["a", "b"]
