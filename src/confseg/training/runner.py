"""Train one run: create the self-describing run folder, fit, resume, summarise.

A run folder::

    runs/<name>/
      config.yaml        everything needed to rerun it
      splits.json        patients per fold
      run.json           status (running / finished / failed), versions, timings
      checkpoints/best.ckpt, last.ckpt
      metrics.csv        per-epoch log (Lightning CSVLogger)
      progress.png       loss and Dice curves
      summary.json       final test metrics with confidence intervals (written by evaluation)
"""

from __future__ import annotations

import csv
import json
import logging
import platform
import shutil
import time
import warnings
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import EarlyStopping, ModelCheckpoint
from pytorch_lightning.loggers import CSVLogger

import confseg
from confseg.errors import ConfsegError
from confseg.io.atomic import atomic_write_text
from confseg.splits import write_splits
from confseg.training.config import MONITORS, TrainConfig
from confseg.training.data import SegmentationDataModule
from confseg.training.module import SegmentationModule


class RunError(ConfsegError):
    """A run folder is in a state that forbids the requested action."""


def read_run_status(run: Path) -> dict[str, Any]:
    """``run.json`` of a run folder ({} when absent)."""
    p = Path(run) / "run.json"
    return json.loads(p.read_text()) if p.exists() else {}


def _write_status(run: Path, **fields: Any) -> None:
    status = read_run_status(run)
    status.update(fields)
    atomic_write_text(run / "run.json", json.dumps(status, indent=1, default=str) + "\n")


def _prepare_folder(cfg: TrainConfig, overwrite: bool) -> Path:
    run = Path(cfg.out)
    if run.exists() and any(run.iterdir()):
        state = read_run_status(run).get("status")
        if not overwrite:
            if state == "finished":
                raise RunError(f"{run}: already holds a finished run; pick another --out or "
                               "pass --overwrite")
            raise RunError(f"{run}: not empty (run status: {state or 'unknown'}); continue it "
                           f"with `confseg train --resume {run}` or pass --overwrite")
        shutil.rmtree(run)
    run.mkdir(parents=True, exist_ok=True)
    return run


def _precision(cfg: TrainConfig) -> str:
    if cfg.precision != "auto":
        return cfg.precision
    return "16-mixed" if torch.cuda.is_available() and cfg.accelerator != "cpu" else "32-true"


def _quiet_lightning() -> None:
    """Drop Lightning's INFO chatter (tips, "GPU available") and a torch-internal deprecation."""
    for name in ("pytorch_lightning", "lightning.pytorch", "lightning_fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")
    warnings.filterwarnings("ignore", message=r".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=r".*Experiment logs directory.*")


def _trainer(cfg: TrainConfig, run: Path, *, quiet: bool) -> pl.Trainer:
    mode = MONITORS[cfg.monitor]
    callbacks: list[pl.Callback] = [
        ModelCheckpoint(dirpath=run / "checkpoints", filename="best", monitor=cfg.monitor,
                        mode=mode, save_top_k=1, save_last=True, enable_version_counter=False,
                        auto_insert_metric_name=False),
    ]
    if cfg.patience > 0:
        callbacks.append(EarlyStopping(monitor=cfg.monitor, mode=mode, patience=cfg.patience))
    devices = cfg.devices
    strategy = "auto"
    if isinstance(devices, int) and devices > 1:
        strategy = "ddp"
    return pl.Trainer(
        default_root_dir=run,
        max_epochs=cfg.epochs,
        accelerator=cfg.accelerator,
        devices=devices,
        strategy=strategy,
        precision=_precision(cfg),
        deterministic=True,
        logger=CSVLogger(save_dir=run, name="", version=""),
        callbacks=callbacks,
        log_every_n_steps=1,
        num_sanity_val_steps=0,
        enable_model_summary=False,
        enable_progress_bar=not quiet,
        limit_train_batches=cfg.limit_train_batches,
    )


def train(cfg: TrainConfig, *, overwrite: bool = False, quiet: bool = False,
          evaluate: bool = True) -> Path:
    """Train a new run described by ``cfg``.

    Args:
        cfg: The configuration (``cfg.out`` is the run folder).
        overwrite: Replace an existing run folder.
        quiet: No progress bar.
        evaluate: Evaluate the best checkpoint on the test fold afterwards (summary.json).

    Returns:
        The run folder.
    """
    dm = SegmentationDataModule(cfg)  # validates data, split and strategy before any write
    run = _prepare_folder(cfg, overwrite)
    cfg.save(run / "config.yaml")
    write_splits(run / "splits.json", dm.splits)
    _write_status(run, status="running", started=time.strftime("%Y-%m-%dT%H:%M:%S"),
                  confseg=confseg.__version__, torch=torch.__version__,
                  lightning=pl.__version__, python=platform.python_version(),
                  machine=platform.machine(),
                  patients={k: list(v) for k, v in dm.patients.items()},
                  items={k: len(v) for k, v in dm.items.items()})
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    module = SegmentationModule(cfg.to_dict(), list(dm.ds.classes))
    return _fit(cfg, run, dm, module, ckpt=None, quiet=quiet, evaluate=evaluate)


def resume(run: str | Path, *, quiet: bool = False, evaluate: bool = True) -> Path:
    """Continue an interrupted run from ``checkpoints/last.ckpt``."""
    run = Path(run)
    cfg_path = run / "config.yaml"
    if not cfg_path.exists():
        raise RunError(f"{run}: no config.yaml; not a confseg run folder")
    if read_run_status(run).get("status") == "finished":
        raise RunError(f"{run}: already finished; nothing to resume")
    ckpt = run / "checkpoints" / "last.ckpt"
    if not ckpt.exists():
        raise RunError(f"{ckpt}: missing (the run stopped before its first epoch ended); "
                       f"start again with `confseg train --config {cfg_path} --overwrite`")
    cfg = TrainConfig.load(cfg_path)
    from confseg.splits import read_splits

    dm = SegmentationDataModule(cfg, splits=read_splits(run / "splits.json"))
    state = torch.load(ckpt, map_location="cpu", weights_only=False)
    check_checkpoint_spec(state, cfg, where=str(ckpt))
    next_epoch = int(state.get("epoch", 0)) + 1
    _stash_metrics(run, next_epoch)
    module = SegmentationModule(cfg.to_dict(), list(dm.ds.classes))
    _write_status(run, status="running", resumed=time.strftime("%Y-%m-%dT%H:%M:%S"))
    return _fit(cfg, run, dm, module, ckpt=ckpt, quiet=quiet, evaluate=evaluate,
                start_epoch=next_epoch)


def check_checkpoint_spec(state: dict[str, Any], cfg: TrainConfig, *, where: str) -> None:
    """Refuse a checkpoint saved from another model or class count."""
    spec = state.get("confseg_spec") or {}
    if spec and (spec.get("name") != cfg.model or spec.get("in_channels") != cfg.channels):
        raise RunError(f"{where}: checkpoint is from model {spec.get('name')!r} with "
                       f"{spec.get('in_channels')} input channels, but the config asks for "
                       f"{cfg.model!r} with {cfg.channels}; use the matching config")


STASH = ".metrics_before_resume.csv"


def _read_rows(path: Path) -> list[dict[str, str]]:
    if not path.exists():
        return []
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def _write_rows(path: Path, rows: list[dict[str, str]]) -> None:
    fields: list[str] = []
    for r in rows:
        fields.extend(k for k in r if k not in fields)
    lines: list[str] = []

    class _Sink:
        def write(self, s: str) -> None:
            lines.append(s)

    w = csv.DictWriter(_Sink(), fieldnames=fields)
    w.writeheader()
    w.writerows(rows)
    atomic_write_text(path, "".join(lines))


def _stash_metrics(run: Path, next_epoch: int) -> None:
    """Keep metric rows of finished epochs before resuming.

    Lightning's CSVLogger deletes ``metrics.csv`` when it starts, so the rows of epochs before
    the checkpoint go to a stash (which also survives a crash of the resumed run) and are merged
    back by :func:`_merge_metrics`. Rows of epochs the resumed run will redo are dropped.
    """
    rows = _read_rows(run / STASH) + _read_rows(run / "metrics.csv")
    keep = [r for r in rows if r.get("epoch") and int(float(r["epoch"])) < next_epoch]
    _write_rows(run / STASH, keep)


def _merge_metrics(run: Path) -> None:
    stash = run / STASH
    if stash.exists():
        _write_rows(run / "metrics.csv", _read_rows(stash) + _read_rows(run / "metrics.csv"))
        stash.unlink()


def _fit(cfg: TrainConfig, run: Path, dm: SegmentationDataModule, module: SegmentationModule,
         *, ckpt: Path | None, quiet: bool, evaluate: bool, start_epoch: int = 0) -> Path:
    _quiet_lightning()
    trainer = _trainer(cfg, run, quiet=quiet)
    t0 = time.perf_counter()
    try:
        trainer.fit(module, datamodule=dm, ckpt_path=ckpt)
    except BaseException as exc:
        _write_status(run, status="failed", error=f"{type(exc).__name__}: {exc}")
        raise
    elapsed = time.perf_counter() - t0
    epochs_run = max(1, trainer.current_epoch - start_epoch)
    _merge_metrics(run)
    _write_status(run, fit_seconds=round(elapsed, 2), epochs=trainer.current_epoch,
                  seconds_per_epoch=round(elapsed / epochs_run, 3),
                  stopped_early=trainer.current_epoch < cfg.epochs)
    from confseg.report.plots import plot_progress

    plot_progress(run / "metrics.csv", run / "progress.png")
    if evaluate:
        from confseg.evaluation import evaluate_run

        evaluate_run(run, quiet=quiet)
    _write_status(run, status="finished", finished=time.strftime("%Y-%m-%dT%H:%M:%S"))
    return run
