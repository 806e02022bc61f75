"""Stochastic weight averaging over a run's final epochs (``TrainConfig.swa``).

The end-of-epoch weights of the last ``swa`` fraction of the epochs are averaged with equal
weights, at the run's own learning rate (Izmailov et al., 2018). Lightning's
:class:`~pytorch_lightning.callbacks.WeightAveraging` keeps the average, puts it in full
checkpoints (the current weights beside it, so ``--resume`` continues both) and leaves it in
the model when training ends. Three things are added here:

* before the first averaged epoch the average is nothing yet: validation, the end of
  training and checkpoints then use the current weights (Lightning would use the initial
  ones);
* the weights-only ``best.ckpt`` (what evaluate, predict and export read) gets the average
  too, through ``SegmentationModule.on_save_checkpoint``, so that it holds what validation
  measured;
* a checkpoint written before averaging began resumes without a warning.
"""

from __future__ import annotations

import math
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import WeightAveraging


def first_averaged_epoch(epochs: int, fraction: float) -> int:
    """Zero-based index of the first epoch whose weights enter the average (at least one)."""
    return min(epochs - 1, max(0, epochs - math.ceil(fraction * epochs)))


class FinalEpochsAverage(WeightAveraging):
    """Equal-weight average of the end-of-epoch weights from ``start_epoch`` on.

    Args:
        start_epoch: Zero-based index of the first averaged epoch.
    """

    def __init__(self, *, start_epoch: int) -> None:
        super().__init__(use_buffers=True)
        self.start_epoch = int(start_epoch)
        self._swapped = False  # the average is in the model during this validation

    def should_update(self, step_idx: int | None = None, epoch_idx: int | None = None) -> bool:
        """Update once per epoch, from :attr:`start_epoch` on."""
        return epoch_idx is not None and epoch_idx >= self.start_epoch

    @property
    def n_averaged(self) -> int:
        """How many epochs' weights are in the average so far."""
        avg = self._average_model
        return 0 if avg is None else int(avg.n_averaged.item())

    def averaged_state_dict(self) -> dict[str, torch.Tensor] | None:
        """The averaged module's ``state_dict`` (LightningModule keys), or None before any."""
        if not self.n_averaged:
            return None
        assert self._average_model is not None
        return dict(self._average_model.module.state_dict())

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Leave the average in the model, if there is one."""
        if self.n_averaged:
            super().on_train_end(trainer, pl_module)

    def on_validation_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Validate the average, once there is one."""
        self._swapped = bool(self.n_averaged)
        if self._swapped:
            self._swap_models(pl_module)

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Put the current weights back."""
        if self._swapped:
            self._swap_models(pl_module)
            self._swapped = False

    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                           checkpoint: dict[str, Any]) -> None:
        """Full checkpoints: the average as ``state_dict`` and the current weights beside it."""
        if self.n_averaged:
            super().on_save_checkpoint(trainer, pl_module, checkpoint)

    def on_load_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                           checkpoint: dict[str, Any]) -> None:
        """Restore both weight sets; a checkpoint from before averaging began holds just one."""
        if "current_model_state" in checkpoint:
            super().on_load_checkpoint(trainer, pl_module, checkpoint)
