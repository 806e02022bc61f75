"""DDP on CPU: 2 processes on the gloo backend, through the real CLI.

Lightning's launcher starts rank 1 by running the same command again, so this also checks that
only rank 0 writes the run folder, that validation Dice is reduced over both ranks' shards
(torchmetrics sum states) and that a run trained under DDP resumes under DDP.
"""

import csv
import os
import subprocess
import sys

import pytest
import torch

from confseg.config import TrainConfig
from confseg.runs import RunFolder

from conftest import write_tiny_dataset


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    return subprocess.run([sys.executable, "-m", "confseg", *args], capture_output=True,
                          text=True, timeout=600, env=env)


def _val_rows(run: RunFolder) -> dict[int, dict[str, float]]:
    with run.metrics_csv.open(newline="") as f:
        return {int(float(r["epoch"])): {k: float(v) for k, v in r.items() if v}
                for r in csv.DictReader(f) if r.get("val/dice")}


def _single_process_validation(run: RunFolder) -> dict[str, float]:
    """Validate the run's last checkpoint in this process, on the whole validation split."""
    import pytorch_lightning as pl

    from confseg.training.datamodule import SegmentationDataModule
    from confseg.training.module import SegmentationModule

    cfg = run.config
    dm = SegmentationDataModule(cfg, splits=run.splits())
    dm.setup("fit")
    module = SegmentationModule.load_from_checkpoint(run.checkpoint("last"), map_location="cpu",
                                                     weights_only=False)
    from confseg.training.runner import resolve_precision

    trainer = pl.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                         enable_model_summary=False, precision=resolve_precision(cfg))
    (out,) = trainer.validate(module, dataloaders=dm.val_dataloader(), verbose=False)
    return {k: float(v) for k, v in out.items()}


def test_ddp_two_cpu_processes_train_validate_and_resume(tmp_path):
    # 6 patients, 3 folds: 4 validation and 4 training images, an even split over 2 ranks
    # (no DistributedSampler padding), so the reduced Dice must equal the single-process one.
    data = write_tiny_dataset(tmp_path / "ds", patients=6, per_patient=2, size=(40, 56))
    out = tmp_path / "run"
    common = ["--model", "fpn-resnet18", "--size", "64", "--batch-size", "2", "--k", "3",
              "--accelerator", "cpu", "--devices", "2", "--patience", "0", "--quiet"]
    r = _cli("train", str(data), "--out", str(out), "--epochs", "1", *common)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    run = RunFolder(out)
    assert run.status == "finished"
    assert run.checkpoint("best").is_file() and run.checkpoint("last").is_file()
    assert run.has_summary() and run.report_path.is_file()
    assert r.stdout.count("run folder:") == 1  # rank 1 did not report
    assert run.read_status()["items"] == {"train": 4, "val": 4, "test": 4}

    logged = _val_rows(run)[0]
    single = _single_process_validation(run)
    assert logged["val/dice"] == pytest.approx(single["val/dice"], abs=1e-6)
    assert logged["val/soft_dice"] == pytest.approx(single["val/soft_dice"], abs=1e-6)
    assert logged["val/loss"] == pytest.approx(single["val/loss"], abs=1e-5)

    # Resume under DDP: pretend the run was stopped after epoch 0 of 2.
    RunFolder(out).write_config(run.config.replace(epochs=2))
    run.update_status(status="running")
    before = torch.load(run.checkpoint("last"), map_location="cpu", weights_only=False)["epoch"]
    r = _cli("train", "--resume", str(out), "--quiet")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert before == 0
    assert torch.load(run.checkpoint("last"), map_location="cpu",
                      weights_only=False)["epoch"] == 1
    assert sorted(_val_rows(run)) == [0, 1] and run.status == "finished"
    assert TrainConfig.load(run.config_path).epochs == 2
