import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "train_throughput.py"


def _bench(name: str):
    """Import ``benchmarks/<name>.py`` as a module (its ``_common`` import resolves)."""
    import importlib

    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))


def test_train_throughput_quick_prints_positive_figures():
    # One thread and passive OpenMP waiting: on a busy 2-core machine spinning threads make a
    # step 10x slower; the smoke test checks the script, not the machine.
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--threads", "1", "--steps", "2",
         "--batch-size", "2", "--overhead-steps", "10"],
        capture_output=True, text=True, timeout=40, cwd=ROOT, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout)  # stdout holds exactly one JSON object
    for key in ("plain_images_per_s", "confseg_images_per_s", "ratio", "loader_images_per_s",
                "loader_images_per_s_2_workers", "loader_over_model"):
        assert isinstance(out[key], float) and out[key] > 0, (key, out[key])
    assert out["model"] == "fpn-resnet18" and out["input_size"] == [1, 64, 64]
    assert out["batch_size"] == 2 and out["steps_timed"] == 2 and out["torch_threads"] == 1
    assert len(out["repeats"]) == out["n_repeats"] == 1
    rep = out["repeats"][0]
    assert rep["ratio"] == pytest.approx(
        rep["confseg_images_per_s"] / rep["plain_images_per_s"], rel=1e-3)
    trainer = out["confseg_trainer"]
    assert trainer["deterministic"] is True and trainer["loggers"] == ["CSVLogger"]
    assert trainer["log_every_n_steps"] == 1 and "ModelCheckpoint" in trainer["callbacks"]
    steps_ms = out["overhead"]["step_ms_median"]
    assert set(steps_ms) == {"plain", "confseg"} and min(steps_ms.values()) > 0
    assert out["overhead_ms_per_step"] == pytest.approx(
        steps_ms["confseg"] - steps_ms["plain"], abs=2e-3)
    assert out["loader"]["dataset"]["items"] == 16
    assert out["loader_over_model"] == pytest.approx(
        out["loader_images_per_s"] / out["confseg_images_per_s"], rel=0.01)


def test_vs_monai_smoke_prints_side_by_side_json(tmp_path, capsys):
    from conftest import write_tiny_dataset

    data = write_tiny_dataset(tmp_path / "ds", patients=6, per_patient=1, size=(32, 32),
                              classes=("brain",), raters=3)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE"}
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "vs_monai.py"), "--data", str(data),
         "--work", str(tmp_path / "w"), "--k", "3", "--folds", "1", "--plain-epochs", "1",
         "--epochs", "1", "--model", "segresnet", "--size", "32", "--batch-size", "2",
         "--plain-batch-size", "2",
         "--n-boot", "50", "--precision", "32-true", "--seeds", "2"],
        capture_output=True, text=True, timeout=300, cwd=ROOT, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout)
    assert out["confseg"]["recipe"]["seeds"] == 2  # two runs per fold, averaged
    recipe = out["confseg"]["recipe"]  # the recommended preset, with the flags given on top
    assert recipe["batch_size"] == 2 and recipe["dice_form"] == "semimetric"
    assert "batch 2" in out["plain"]["recipe"]
    assert (tmp_path / "w" / "confseg-f1-s1" / "config.yaml").is_file()
    assert out["folds"][0]["first"] == "confseg"  # odd folds train confseg's side first
    for side in ("plain", "confseg"):
        m = out[side]["metrics"]["brain"]
        assert set(m) >= {"qubiq", "ece", "dice@0.5"} and 0 <= m["qubiq"]["mean"] <= 1
    d = out["paired_confseg_minus_plain"]["qubiq"]
    assert d["n_patients"] == 2 and d["lo"] <= d["mean"] <= d["hi"]
    assert out["train_seconds"]["plain"] > 0 and out["folds"][0]["test_patients"]
    # where the QUBIQ score is lost, and a paired difference, on the same runs (in-process:
    # each subprocess would pay torch's import again)
    qubiq_levels, paired_cases = _bench("qubiq_levels"), _bench("paired_cases")
    lv = qubiq_levels.main(["--work", str(tmp_path / "w"), "--data", str(data)])
    assert lv["folds"] == [1] and lv["raters"] == 3 and lv["cases"] == 2
    assert len(lv["levels"]["dice_per_level"]) == 9
    assert lv["oracle"]["qubiq"] >= lv["levels"]["qubiq"]  # in-sample best per level
    # the per-level kernel agrees with confseg's own QUBIQ score on the same predictions
    assert lv["tta_qubiq"]["flip"] == pytest.approx(lv["levels"]["qubiq"], abs=1e-4)
    # a view is undone where nothing left the frame (bilinear is exact on a linear ramp);
    # the wrong inverse (e.g. rotating back the same way) is not
    u = torch.linspace(0, 1, 32)
    x = (u[:, None] + 2 * u[None, :])[None, None] / 3
    warp = qubiq_levels._warp
    centre = (..., slice(10, 22), slice(10, 22))
    torch.testing.assert_close(warp(warp(x, 10, 1.1), -10, 1 / 1.1)[centre], x[centre],
                               atol=1e-4, rtol=0)
    assert (warp(warp(x, 10, 1.1), 10, 1 / 1.1)[centre] - x[centre]).abs().max() > 0.01
    evals = str(tmp_path / "w" / "confseg-f1" / "eval-*" / "per_case.csv")
    pc = paired_cases.main(["--a", evals, "--b", evals])  # one evaluation with itself
    assert pc["cases"] == 2 and pc["a_minus_b"]["brain"]["qubiq"]["mean"] == 0
    with pytest.raises(SystemExit) as exc:
        paired_cases.main(["--a", evals, "--b", str(tmp_path / "none*.csv")])
    assert exc.value.code == 2 and "no per_case.csv matches" in capsys.readouterr().err
