import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "train_throughput.py"


@pytest.mark.timeout(40)
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
