"""TrainConfig: the run's recipe, one frozen keyword-only dataclass (saved as ``config.yaml``).

No Lightning here: inference, the study and the CLI read it without importing training.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from confseg.data.splits import Splits, parse_val
from confseg.errors import ConfigError, ConfsegError
from confseg.io.atomic import atomic_write_text
from confseg.targets import Strategy, parse_strategy

#: Validation metrics that can select the best checkpoint: name -> mode.
MONITORS = {"val/loss": "min", "val/dice": "max", "val/soft_dice": "max"}
# MONAI BasicUNet, every non-test patient trained on, last epoch kept, AdamW at a constant lr
# (the cosine schedule made ECE +0.023 worse), ultrasound augmentation, equal BCE and a soft
# Dice whose minimum is the soft target (semimetric), batches of 4 for 70 epochs (on QUBIQ's 24
# training cases 1.4x the optimiser steps of batches of 8 for 100 epochs, in 0.7x the compute).
# On QUBIQ, fp32, 5 folds, it beats a plain MONAI script: QUBIQ score +0.007, ECE -0.0024,
# Dice@0.5 +0.008, in 0.75x its training time (docs/results.md).
_RECOMMENDED: dict[str, Any] = {
    "model": "basicunet", "val": "none", "lr": 1e-3, "weight_decay": 1e-4,
    "schedule": "constant", "augment": 1.0, "epochs": 70, "patience": 0, "batch_size": 4,
    "pos_weight_bce": 1.0, "dice_weight": 1.0, "dice_form": "semimetric"}
#: Named, tested recipes (``confseg train --preset NAME``): TrainConfig values that an explicit
#: option overrides. ``auto`` (see :mod:`confseg.training.plan`) starts from ``recommended``
#: and sizes it to the dataset and an optional time budget. The measurements behind them are
#: in docs/results.md.
PRESETS: dict[str, dict[str, Any]] = {
    "recommended": _RECOMMENDED,
    # the recommended recipe on a light network for real-time video on a CPU: MONAI
    # FlexibleUNet on EfficientNet-B0 with a small decoder, 1.7 GFLOPs per 256-px frame
    # against BasicUNet's 9.9. On lus-cs541 (leave-one-subject-out, 24 epochs) its Dice was
    # BasicUNet's (pleural line 0.698 against 0.701 at 12 epochs, measured on another CPU;
    # within 0.05 on the two subjects re-run side by side) and it ran at 42.6 frames/s end to
    # end in fp32 on 2 AVX2 cores (docs/results.md). At 12 epochs it was not yet confident on
    # two of four subjects. It keeps batches of 8 and 100 epochs when `recommended` moved to
    # 4 and 70: its figures were measured with batches of 8, and its encoder's batch norm
    # gets noisier with smaller batches.
    "realtime": {**_RECOMMENDED, "model": "flexunet-efficientnet-b0",
                 "model_options": {"decoder_channels": [64, 32, 24, 16, 8]},
                 "batch_size": 8, "epochs": 100},
    # the reference architecture of confidence-aware LUS segmentation
    "fpn-lus": {"model": "fpn-resnet34", "val": "next-fold", "lr": 1e-3, "weight_decay": 1e-4,
                "augment": 1.0, "epochs": 50, "patience": 10, "batch_size": 8},
}

#: Dice intersection forms (``TrainConfig.dice_form``); the same as
#: ``confseg.losses.DICE_FORMS``, repeated so that the config loads without torch (a test checks).
DICE_FORMS = ("product", "semimetric")
#: Learning-rate schedules (``TrainConfig.schedule``).
SCHEDULES = ("cosine", "constant")
#: Lightning accelerators confseg accepts.
ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps")
_TYPES = {"str": (str,), "int": (int,), "float": (int, float), "None": (type(None),),
          "dict[str, Any]": (dict,)}


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """Everything needed to (re)run one training run.

    Attributes:
        data: Dataset folder.
        out: Run folder.
        strategy: Label strategy string (``threshold:0.6``, ``soft``, ...).
        model: Model name from :func:`confseg.models.list_models`.
        model_options: Architecture options for ``create_model`` (e.g. BasicUNet
            ``{features: [16, 16, 32, 64, 128, 16]}``); stored in the checkpoint's ModelSpec,
            so predictors and exports rebuild the same network.
        fold: Test fold (never trained or validated on).
        val: Validation patients: ``next-fold`` (the next fold), ``inner:F`` (a fraction F of
            the non-test patients) or ``none`` (train on every non-test patient, keep the last
            checkpoint, no early stopping).
        k: Number of folds (used when the dataset has no ``splits.json``), or ``"loo"``.
        split_seed: Seed of the patient split.
        splits: Optional explicit ``splits.json`` path (overrides ``DATA/splits.json``).
        epochs: Maximum epochs.
        batch_size: Batch size.
        size: Square input side (images are letterboxed).
        channels: Model input channels (1 = grey).
        lr: AdamW learning rate.
        weight_decay: AdamW weight decay.
        schedule: Learning-rate schedule over the epochs: ``cosine`` (annealed to 0) or
            ``constant``.
        augment: Augmentation strength (0 disables augmentation).
        seed: Seed for weights, shuffling and augmentation.
        monitor: Validation metric selecting the best checkpoint and early stopping.
        patience: Early-stopping patience in epochs (0 disables early stopping).
        num_workers: DataLoader worker processes.
        accelerator: ``auto``, ``cpu`` or ``gpu``.
        devices: Number of devices, or ``auto``.
        precision: Lightning precision (``auto`` = 16-mixed on GPU, 32 on CPU).
        encoder_weights: Local file of pretrained encoder weights (never downloaded).
        limit_train_batches: Fraction or count of training batches per epoch (for quick runs).
        pos_weight_bce: Loss weight of the BCE term.
        dice_weight: Loss weight of the Dice term.
        dice_form: Intersection form of the Dice term: ``product`` (the usual soft Dice) or
            ``semimetric`` (zero loss exactly at the soft target; same as ``product`` on hard
            targets). See :class:`confseg.losses.SoftBCEDiceLoss`.
        swa: Fraction of the final epochs whose end-of-epoch weights are averaged (stochastic
            weight averaging at the run's learning rate) into the model that is kept; 0 = off.
        checkpoint_every: Seconds between resume checkpoints (``last.ckpt``, weights and
            optimizer state). One is always written after the first and the final epoch;
            0 = after every epoch. A killed run resumes from the latest one, so this bounds
            the training time lost; a checkpoint per epoch can cost more than a small epoch.
        extra: Free-form notes kept with the config (``--preset`` records its name and, for
            ``auto``, the plan it made).
    """

    data: str
    out: str
    strategy: str = "threshold:0.6"
    model: str = "fpn-resnet34"
    model_options: dict[str, Any] = field(default_factory=dict)
    fold: int = 0
    val: str = "next-fold"
    k: int | str = 5
    split_seed: int = 0
    splits: str | None = None
    epochs: int = 50
    batch_size: int = 8
    size: int = 256
    channels: int = 1
    lr: float = 1e-3
    weight_decay: float = 1e-4
    schedule: str = "cosine"
    augment: float = 1.0
    seed: int = 0
    monitor: str = "val/loss"
    patience: int = 10
    num_workers: int = 0
    accelerator: str = "auto"
    devices: int | str = "auto"
    precision: str = "auto"
    encoder_weights: str | None = None
    limit_train_batches: float | int = 1.0
    pos_weight_bce: float = 1.0
    dice_weight: float = 1.0
    dice_form: str = "product"
    swa: float = 0.0
    checkpoint_every: float = 60.0
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check_types(self)
        self.label_strategy  # noqa: B018 - parse (and cache) now: a bad strategy fails here
        for name in ("epochs", "batch_size", "size", "channels"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"{name}={getattr(self, name)!r}; must be >= 1")
        if self.size % 32:
            raise ConfigError(f"size={self.size}; use a multiple of 32 (e.g. 256)")
        if self.lr <= 0:
            raise ConfigError(f"lr={self.lr}; must be > 0")
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"schedule={self.schedule!r}; choose one of {', '.join(SCHEDULES)}")
        if self.dice_form not in DICE_FORMS:
            raise ConfigError(f"dice_form={self.dice_form!r}; choose one of "
                              f"{', '.join(DICE_FORMS)}")
        if not 0 <= self.swa < 1:
            raise ConfigError(f"swa={self.swa}; give a fraction of the epochs in [0, 1)")
        if self.checkpoint_every < 0:
            raise ConfigError(f"checkpoint_every={self.checkpoint_every}; give seconds >= 0 "
                              "(0 = after every epoch)")
        if self.fold < 0:
            raise ConfigError(f"fold={self.fold}; folds are numbered from 0")
        try:
            parse_val(self.val)
        except ConfsegError as exc:
            raise ConfigError(str(exc)) from None
        if self.monitor not in MONITORS:
            raise ConfigError(f"monitor={self.monitor!r}; choose one of {sorted(MONITORS)}")
        if self.accelerator not in ACCELERATORS:
            raise ConfigError(f"accelerator={self.accelerator!r}; choose one of "
                              f"{', '.join(ACCELERATORS)}")
        if self.devices != "auto" and (not isinstance(self.devices, int) or self.devices < 1):
            raise ConfigError(f"devices={self.devices!r}; give a number >= 1 or auto")
        if self.num_workers < 0:
            raise ConfigError(f"num_workers={self.num_workers}; must be >= 0")
        if self.patience < 0:
            raise ConfigError(f"patience={self.patience}; must be >= 0 (0 = no early stopping)")
        if self.k != "loo" and not (isinstance(self.k, int) and self.k >= 2):
            raise ConfigError(f"k={self.k!r}; give a number of folds >= 2 or loo")
        if self.encoder_weights and not Path(self.encoder_weights).is_file():
            raise ConfigError(f"encoder_weights={self.encoder_weights!r}: file not found; give a "
                              "local .pt/.pth file")
        if self.splits and not Path(self.splits).is_file():
            raise ConfigError(f"splits={self.splits!r}: file not found")

    @property
    def label_strategy(self) -> Strategy:
        """The parsed :attr:`strategy` (parsed once, then cached)."""
        cached = self.__dict__.get("_label_strategy")
        if cached is None:
            cached = parse_strategy(self.strategy)
            object.__setattr__(self, "_label_strategy", cached)
        return cached

    @property
    def has_validation(self) -> bool:
        """Whether the run holds out validation patients (``val`` is not ``none``)."""
        return parse_val(self.val)[0] != "none"

    def partition(self, splits: Splits) -> tuple[list[str], list[str], list[str]]:
        """The run's ``(train, val, test)`` patients: its fold and validation mode."""
        return splits.partition(self.fold, val=self.val, seed=self.split_seed)

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with some fields changed."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for YAML."""
        return dataclasses.asdict(self)

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write YAML atomically."""
        atomic_write_text(path, yaml.safe_dump(self.to_dict(), sort_keys=False))

    @classmethod
    def load(cls, path: str | os.PathLike[str], **overrides: Any) -> TrainConfig:
        """Read a YAML config, applying ``overrides`` (None values are ignored)."""
        p = Path(path)
        try:
            obj = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
        except FileNotFoundError:
            raise ConfigError(f"{p}: config not found") from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"{p}: not valid YAML ({exc.__class__.__name__}); fix it") from None
        if not isinstance(obj, dict):
            raise ConfigError(f"{p}: must be a mapping of option: value")
        obj.update({k: v for k, v in overrides.items() if v is not None})
        return cls.from_dict(obj, where=str(p))

    @classmethod
    def from_dict(cls, obj: dict[str, Any], *, where: str = "config") -> TrainConfig:
        """Build from a dict, naming unknown keys."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(obj) - names)
        if unknown:
            raise ConfigError(f"{where}: unknown option {unknown[0]!r}; known: {sorted(names)}")
        missing = [n for n in ("data", "out") if not obj.get(n)]
        if missing:
            raise ConfigError(f"{where}: missing {missing[0]!r}")
        floats = {f.name for f in dataclasses.fields(cls) if str(f.type) == "float"}
        for name in floats & set(obj):
            if isinstance(obj[name], str):  # YAML 1.1 reads 1e-3 (no dot) as a string
                try:
                    obj[name] = float(obj[name])
                except ValueError:
                    raise ConfigError(f"{where}: {name}={obj[name]!r}; give a number") from None
        try:
            return cls(**obj)
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from None


def _check_types(cfg: TrainConfig) -> None:
    """Each field holds a value of its declared type (a YAML typo gives one clear line)."""
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        allowed = tuple(t for part in str(f.type).split("|") for t in _TYPES[part.strip()])
        if isinstance(value, bool) or not isinstance(value, allowed):
            want = " or ".join(part.strip() for part in str(f.type).split("|"))
            raise ConfigError(f"{f.name}={value!r}: expected {want}")
