"""LightningModule: a segmentation model trained with the weighted soft BCE + Dice loss."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch

from confseg.config import TrainConfig
from confseg.losses import SoftBCEDiceLoss, deep_supervision_components
from confseg.models import create_model
from confseg.models.spec import SPEC_KEY, ModelSpec
from confseg.training.averaging import FinalEpochsAverage
from confseg.training.valmetrics import PooledDice


class SegmentationModule(pl.LightningModule):
    """Model + loss + optimiser for one run.

    Logs ``train/loss`` (and its ``bce``/``dice`` parts), ``val/loss``, ``val/dice`` (hard Dice of
    the prediction at 0.5 against the strategy's target, pooled over the validation set) and
    ``val/soft_dice``; the validation Dice values are torchmetrics objects whose sums are
    reduced across DDP ranks, so checkpoint selection sees the whole validation set. Global RNG
    states are saved in checkpoints so a resumed run shuffles and initialises exactly like an
    uninterrupted one.

    Args:
        cfg: Run configuration (as a dict, so Lightning can save it as hyper-parameters).
        classes: Class names.
    """

    def __init__(self, cfg: dict[str, Any], classes: list[str]) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.cfg = TrainConfig.from_dict(dict(cfg))
        self.classes = list(classes)
        # size: dynunet plans its topology from the training size (the other models ignore it)
        self.model = create_model(self.cfg.model, in_channels=self.cfg.channels,
                                  classes=len(classes), encoder_weights=self.cfg.encoder_weights,
                                  size=self.cfg.size, **self.cfg.model_options)
        self.loss = SoftBCEDiceLoss(bce_weight=self.cfg.pos_weight_bce,
                                    dice_weight=self.cfg.dice_weight,
                                    dice=self.cfg.dice_form)
        # torchmetrics objects: their sums reduce across DDP ranks before Lightning logs them
        self.val_dice = PooledDice(soft=False)
        self.val_soft_dice = PooledDice(soft=True)

    @property
    def spec(self) -> ModelSpec:
        """What a Predictor or an export needs to rebuild and feed this network."""
        return ModelSpec(name=self.cfg.model, in_channels=self.cfg.channels,
                         class_names=tuple(self.classes), size=self.cfg.size,
                         options=self.cfg.model_options)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return self.model(x)

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:  # noqa: D102
        out, tgt, w = self(batch["image"]), batch["target"], batch["weight"]
        # a network with deep supervision (dynunet deep_supervision=true) stacks its heads
        parts = (self.loss.components(out, tgt, w) if out.ndim == tgt.ndim
                 else deep_supervision_components(self.loss, out, tgt, w))
        n = batch["image"].shape[0]
        self.log("train/loss", parts["loss"], on_step=False, on_epoch=True, prog_bar=True,
                 batch_size=n)
        self.log("train/bce", parts["bce"], on_step=False, on_epoch=True, batch_size=n)
        self.log("train/dice_loss", parts["dice"], on_step=False, on_epoch=True, batch_size=n)
        return parts["loss"]

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:  # noqa: D102
        logits = self(batch["image"])
        w, tgt = batch["weight"], batch["target"]
        n = logits.shape[0]
        self.log("val/loss", self.loss(logits, tgt, w), on_epoch=True, prog_bar=True,
                 batch_size=n, sync_dist=True)
        p = torch.sigmoid(logits.float())
        self.val_dice.update(p, tgt, w)
        self.val_soft_dice.update(p, tgt, w)
        self.log("val/dice", self.val_dice, on_step=False, on_epoch=True, prog_bar=True)
        self.log("val/soft_dice", self.val_soft_dice, on_step=False, on_epoch=True)

    def configure_optimizers(self) -> Any:  # noqa: D102
        opt = torch.optim.AdamW(self.parameters(), lr=self.cfg.lr,
                                weight_decay=self.cfg.weight_decay)
        if self.cfg.schedule == "constant":
            return opt
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, self.cfg.epochs))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "epoch"}}

    def on_train_epoch_start(self) -> None:  # noqa: D102
        dm = getattr(self.trainer, "datamodule", None)
        if dm is not None and hasattr(dm, "set_epoch"):
            dm.set_epoch(self.current_epoch)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:  # noqa: D102
        # Plain tensors/ints only, so the checkpoint loads with torch.load(weights_only=True).
        name, keys, pos, has_gauss, gauss = np.random.get_state()
        checkpoint["confseg_rng"] = {
            "torch": torch.get_rng_state(),
            "numpy": [name, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss),
                      float(gauss)],
            "python": random.getstate(),
        }
        checkpoint[SPEC_KEY] = self.spec.to_dict()
        if "callbacks" not in checkpoint:  # weights only (best.ckpt): the average, if any
            for cb in getattr(self._trainer, "callbacks", None) or ():
                state = cb.averaged_state_dict() if isinstance(cb, FinalEpochsAverage) else None
                if state is not None:
                    checkpoint["state_dict"] = state

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:  # noqa: D102
        rng = checkpoint.get("confseg_rng")
        if rng:
            torch.set_rng_state(rng["torch"])
            name, keys, pos, has_gauss, gauss = rng["numpy"]
            np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
            version, internal, gauss_next = rng["python"]
            random.setstate((version, tuple(internal), gauss_next))
