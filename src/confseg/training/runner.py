"""Train one run into its run folder (:class:`confseg.runs.RunFolder`): fit, resume.

Training ends with status ``trained``; evaluating the run and rendering its report are later
stages, chained by :mod:`confseg.workflows`.

Under DDP, Lightning's launcher starts the other ranks by running the same command again;
only rank 0 writes the run folder.
"""

from __future__ import annotations

import logging
import platform
import signal
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import EarlyStopping, ModelCheckpoint
from pytorch_lightning.loggers import CSVLogger
from pytorch_lightning.utilities import rank_zero_only
from pytorch_lightning.utilities.exceptions import MisconfigurationException

import confseg
from confseg.config import MONITORS, TrainConfig
from confseg.errors import ConfigError, Interrupted, RunError
from confseg.models.spec import ModelSpec, load_checkpoint
from confseg.runs import FAILED, FINISHED, INTERRUPTED, RUNNING, TRAINED, RunFolder
from confseg.training.averaging import FinalEpochsAverage, first_averaged_epoch
from confseg.training.csvlog import merge_metrics, stash_metrics
from confseg.training.datamodule import SegmentationDataModule
from confseg.training.module import SegmentationModule
from confseg.viz.plots import plot_progress


def is_rank_zero() -> bool:
    """Whether this process is rank 0 (always True outside distributed training)."""
    return int(getattr(rank_zero_only, "rank", 0) or 0) == 0


def cpu_has_bf16() -> bool:
    """Whether this CPU runs bfloat16 matrix maths natively (AVX-512 BF16 or AMX)."""
    for probe in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"):
        try:
            if getattr(torch.cpu, probe)():
                return True
        except (AttributeError, RuntimeError):  # pragma: no cover - older torch
            continue
    return False


def resolve_precision(cfg: TrainConfig) -> str:
    """Lightning precision for ``cfg.precision``; ``auto`` picks per device.

    ``auto``: 16-bit mixed on a GPU, bf16 mixed on a CPU with native bfloat16 (AVX-512 BF16 or
    AMX; about 2x the images/s of fp32 there), else fp32.
    """
    if cfg.precision != "auto":
        return cfg.precision
    if torch.cuda.is_available() and cfg.accelerator != "cpu":
        return "16-mixed"
    return "bf16-mixed" if cpu_has_bf16() else "32-true"



def _quiet_lightning() -> None:
    """Drop Lightning's INFO chatter (tips, "GPU available") and a torch-internal deprecation."""
    for name in ("pytorch_lightning", "lightning.pytorch", "lightning_fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")
    warnings.filterwarnings("ignore", message=r".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=r".*Experiment logs directory.*")
    warnings.filterwarnings("ignore", message=r".*Checkpoint directory .* not empty.*")  # resume


class _LastCheckpoint(ModelCheckpoint):
    """The resume checkpoint ``last.ckpt``, with a state key of its own beside ``best``'s.

    Written after the first and the final epoch, and in between at most every ``every_s``
    seconds: writing it can cost more than a small epoch.
    """

    def __init__(self, *, every_s: float, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._every_s = every_s
        self._saved_at: float | None = None

    @property
    def state_key(self) -> str:
        return "last-" + super().state_key

    def _due(self, trainer: pl.Trainer) -> bool:
        final = trainer.should_stop or trainer.current_epoch + 1 >= (trainer.max_epochs or 0)
        due = self._saved_at is None or time.monotonic() - self._saved_at >= self._every_s
        # every DDP rank must take rank 0's decision: saving is a collective call
        return bool(trainer.strategy.broadcast(bool(final or due)))

    # Lightning saves at the end of the epoch's training or of its validation, whichever ends
    # the epoch; both are gated (the per-batch hook never saves without a step interval).
    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._due(trainer):
            super().on_train_epoch_end(trainer, pl_module)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._due(trainer):
            super().on_validation_end(trainer, pl_module)

    def _save_checkpoint(self, trainer: pl.Trainer, filepath: str) -> None:
        super()._save_checkpoint(trainer, filepath)
        self._saved_at = time.monotonic()


def build_trainer(cfg: TrainConfig, run: RunFolder, *, quiet: bool = False,
                  callbacks: Sequence[pl.Callback] = ()) -> pl.Trainer:
    """The Lightning Trainer of a run: checkpoints, early stopping, CSV log, DDP when > 1 device.

    Args:
        cfg: The run configuration.
        run: The run folder (checkpoints and ``metrics.csv`` go there).
        quiet: No progress bar.
        callbacks: Extra callbacks (tests and benchmarks hook in here).
    """
    mode = MONITORS[cfg.monitor]
    # Without validation patients (--val none), "best" is the last epoch: no monitor, no
    # early stopping.
    monitor = cfg.monitor if cfg.has_validation else None
    # best.ckpt holds weights only (what evaluate, predict and export read); last.ckpt holds
    # the optimizer too (what --resume needs): a third of the disk of two full checkpoints.
    # Without a monitor, best.ckpt is the final epoch's: written once, at the end.
    cbs: list[pl.Callback] = [
        ModelCheckpoint(dirpath=run.checkpoints_dir, filename="best", monitor=monitor,
                        mode=mode, save_top_k=1, save_weights_only=True,
                        every_n_epochs=1 if monitor else cfg.epochs,
                        enable_version_counter=False, auto_insert_metric_name=False),
        _LastCheckpoint(dirpath=run.checkpoints_dir, filename="last", monitor=None, save_top_k=1,
                        every_s=cfg.checkpoint_every, enable_version_counter=False,
                        auto_insert_metric_name=False),
    ]
    if cfg.patience > 0 and monitor is not None:
        cbs.append(EarlyStopping(monitor=cfg.monitor, mode=mode, patience=cfg.patience))
    if cfg.swa > 0:
        cbs.append(FinalEpochsAverage(start_epoch=first_averaged_epoch(cfg.epochs, cfg.swa)))
    cbs.extend(callbacks)
    devices = cfg.devices
    strategy = "auto"
    distributed = isinstance(devices, int) and devices > 1
    if distributed:
        strategy = "ddp"
    return pl.Trainer(
        # SyncBatchNorm is CUDA-only; on CPU, DDP broadcasts rank 0's BatchNorm buffers
        sync_batchnorm=distributed and cfg.accelerator not in ("cpu",) and
        torch.cuda.is_available(),
        default_root_dir=run.root,
        max_epochs=cfg.epochs,
        accelerator=cfg.accelerator,
        devices=devices,
        strategy=strategy,
        precision=resolve_precision(cfg),
        limit_val_batches=None if cfg.has_validation else 0,
        deterministic=True,
        logger=CSVLogger(save_dir=run.root, name="", version=""),
        callbacks=cbs,
        log_every_n_steps=1,
        num_sanity_val_steps=0,
        enable_model_summary=False,
        enable_progress_bar=not quiet,
        limit_train_batches=cfg.limit_train_batches,
    )


def train(cfg: TrainConfig, *, overwrite: bool = False, quiet: bool = False,
          callbacks: Sequence[pl.Callback] = ()) -> Path:
    """Train a new run described by ``cfg`` (``cfg.out`` is the run folder).

    The data, split and strategy are checked before anything is written.

    Args:
        cfg: The configuration.
        overwrite: Replace an existing run folder.
        quiet: No progress bar.
        callbacks: Extra Lightning callbacks.

    Returns:
        The run folder, with status ``trained``.
    """
    # Paths are stored absolute, so `--resume` works from any directory.
    cfg = cfg.replace(**{k: str(Path(v).resolve()) for k in ("data", "splits", "encoder_weights")
                         if (v := getattr(cfg, k))})
    # Everything that can be checked is checked before the run folder exists: data, split,
    # strategy (setup), model name and encoder weights (the module), accelerator and devices
    # (the trainer).
    dm = SegmentationDataModule(cfg)
    dm.setup("fit")
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    module = SegmentationModule(cfg.to_dict(), list(dm.ds.classes))
    run = RunFolder(cfg.out)
    _quiet_lightning()
    trainer = _checked_trainer(cfg, run, quiet=quiet, callbacks=callbacks)
    if is_rank_zero():
        run.prepare(overwrite=overwrite, inputs=(cfg.data, cfg.splits, cfg.encoder_weights))
        run.write_config(cfg)
        run.write_splits(dm.splits)
        run.update_status(status=RUNNING, started=time.strftime("%Y-%m-%dT%H:%M:%S"),
                          confseg=confseg.__version__, torch=torch.__version__,
                          lightning=pl.__version__, python=platform.python_version(),
                          machine=platform.machine(),
                          validation=cfg.val, precision=resolve_precision(cfg),
                          torch_threads=torch.get_num_threads(),
                          patients={k: list(v) for k, v in dm.patients.items()},
                          items={k: len(v) for k, v in dm.items.items()})
    _fit(cfg, run, dm, module, trainer, ckpt=None)
    return run.root


def resume(run: str | Path | RunFolder, *, quiet: bool = False,
           callbacks: Sequence[pl.Callback] = ()) -> Path:
    """Continue an interrupted run from ``checkpoints/last.ckpt``.

    Returns:
        The run folder, with status ``trained``.
    """
    folder = run if isinstance(run, RunFolder) else RunFolder(run)
    folder.require()
    if folder.status in (TRAINED, FINISHED):
        raise RunError(f"{folder.root}: already {folder.status}; nothing to resume")
    ckpt = folder.checkpoint("last")
    if not ckpt.exists():
        raise RunError(f"{ckpt}: missing (the run stopped before its first epoch ended); "
                       f"start again with `confseg train --config {folder.config_path} "
                       "--overwrite`")
    cfg = folder.config
    dm = SegmentationDataModule(cfg, splits=folder.splits())
    dm.setup("fit")
    state = load_checkpoint(ckpt)  # weights-only: a crafted checkpoint cannot run code
    check_checkpoint_spec(state, cfg, where=str(ckpt))
    next_epoch = int(state.get("epoch", 0)) + 1
    if is_rank_zero():
        stash_metrics(folder.metrics_csv, next_epoch)
        folder.update_status(status=RUNNING, resumed=time.strftime("%Y-%m-%dT%H:%M:%S"))
    module = SegmentationModule(cfg.to_dict(), list(dm.ds.classes))
    _quiet_lightning()
    trainer = _checked_trainer(cfg, folder, quiet=quiet, callbacks=callbacks)
    _fit(cfg, folder, dm, module, trainer, ckpt=ckpt, start_epoch=next_epoch)
    return folder.root


def check_checkpoint_spec(state: dict, cfg: TrainConfig, *, where: str) -> None:
    """Refuse a checkpoint saved from another model or input channel count."""
    try:
        spec = ModelSpec.from_checkpoint(state, where=where)
    except confseg.ConfsegError:
        return  # no spec to compare (Lightning reports a shape mismatch on load)
    if spec.name != cfg.model or spec.in_channels != cfg.channels:
        raise RunError(f"{where}: checkpoint is from model {spec.name!r} with "
                       f"{spec.in_channels} input channels, but the config asks for "
                       f"{cfg.model!r} with {cfg.channels}; use the matching config")


def _checked_trainer(cfg: TrainConfig, run: RunFolder, *, quiet: bool,
                     callbacks: Sequence[pl.Callback]) -> pl.Trainer:
    """:func:`build_trainer`, with Lightning's refusals (no GPU, bad devices) as ConfigError."""
    try:
        return build_trainer(cfg, run, quiet=quiet, callbacks=callbacks)
    except (MisconfigurationException, ValueError, RuntimeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"accelerator={cfg.accelerator!r}, devices={cfg.devices!r}: {first}"
                          ) from None


def _fit(cfg: TrainConfig, run: RunFolder, dm: SegmentationDataModule,
         module: SegmentationModule, trainer: pl.Trainer, *, ckpt: Path | None,
         start_epoch: int = 0) -> None:
    t0 = time.perf_counter()
    try:
        trainer.fit(module, datamodule=dm, ckpt_path=ckpt, weights_only=True)
    except BaseException as exc:
        # Lightning marks the trainer "interrupted" on any exception; only Ctrl-C ends in its
        # sys.exit(1), and SIGTERM in its SIGTERMException (a SystemExit too).
        ctrl_c = isinstance(exc, (SystemExit, KeyboardInterrupt))
        if ctrl_c and trainer.interrupted:
            signal.signal(signal.SIGINT, signal.default_int_handler)  # Lightning ignored it
            if is_rank_zero():
                run.update_status(status=INTERRUPTED, interrupted_epoch=trainer.current_epoch)
            last = run.checkpoint("last")
            where = (f"continue with `confseg train --resume {run.root}`" if last.exists() else
                     "no epoch had finished, so nothing to resume: train again with --overwrite")
            raise Interrupted(f"interrupted in epoch {trainer.current_epoch}; the run folder "
                              f"{run.root} is kept: {where}") from None
        if is_rank_zero():
            run.update_status(status=FAILED, error=f"{type(exc).__name__}: {exc}")
        raise
    if not is_rank_zero():
        return
    elapsed = time.perf_counter() - t0
    epochs_run = max(1, trainer.current_epoch - start_epoch)
    merge_metrics(run.metrics_csv)
    plot_progress(run.metrics_csv, run.progress_png)
    run.update_status(status=TRAINED, fit_seconds=round(elapsed, 2),
                      epochs=trainer.current_epoch,
                      seconds_per_epoch=round(elapsed / epochs_run, 3),
                      stopped_early=trainer.current_epoch < cfg.epochs,
                      trained=time.strftime("%Y-%m-%dT%H:%M:%S"))
