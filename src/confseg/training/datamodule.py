"""LightningDataModule: a native dataset, a strategy and one fold of patient splits."""

from __future__ import annotations

from pathlib import Path

import pytorch_lightning as pl
from torch.utils.data import DataLoader

from confseg.config import TrainConfig
from confseg.data import Dataset, load_dataset
from confseg.data.splits import Splits, check_splits, make_splits, read_splits
from confseg.errors import ConfsegError, SplitError
from confseg.training.augment import ultrasound_augment
from confseg.training.torchdata import SegmentationDataset, check_strategy_fits


def resolve_splits(cfg: TrainConfig, ds: Dataset) -> Splits:
    """The run's splits: ``cfg.splits``, else ``DATA/splits.json``, else made from ``cfg.k``."""
    if cfg.splits:
        path, splits = Path(cfg.splits), read_splits(cfg.splits)
    elif ds.splits_path().exists():
        path, splits = ds.splits_path(), read_splits(ds.splits_path())
    else:
        return make_splits(ds, k=cfg.k, seed=cfg.split_seed)
    check_splits(splits, ds, where=str(path))
    return splits


class SegmentationDataModule(pl.LightningDataModule):
    """Train / validation / test loaders for one fold.

    Args:
        cfg: The run configuration.
        splits: Patient splits (default: :func:`resolve_splits`).
    """

    def __init__(self, cfg: TrainConfig, splits: Splits | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        self._splits = splits
        self._ready = False

    def setup(self, stage: str | None = None) -> None:
        """Load and validate the dataset, resolve the fold and build the three datasets.

        Idempotent: the runner calls it before writing the run folder (so bad input fails
        first) and Lightning calls it again at fit time.
        """
        if self._ready:
            return
        cfg = self.cfg
        self.ds = load_dataset(cfg.data)
        if not self.ds.image_items():
            raise ConfsegError(f"{cfg.data}: no image items to train on (video-only dataset?)")
        strategy = cfg.label_strategy
        self.splits = self._splits or resolve_splits(cfg, self.ds)
        train_p, val_p, test_p = cfg.partition(self.splits)
        by_patient = {p: [it for it in self.ds.image_items() if it.patient == p]
                      for p in self.ds.patients()}
        self.items = {name: [it for p in pats for it in by_patient.get(p, [])]
                      for name, pats in (("train", train_p), ("val", val_p), ("test", test_p))}
        self.patients = {"train": train_p, "val": val_p, "test": test_p}
        for name, its in self.items.items():
            if not its and not (name == "val" and not cfg.has_validation):
                raise SplitError(f"fold {cfg.fold}: the {name} split has no image items; "
                                 "use fewer folds or more patients")
        # strategy.needs_raters and named raters, checked before any sample is built
        check_strategy_fits(strategy, self.ds, [it for its in self.items.values() for it in its])
        label_keys = ["conf", "valid"] + (["raters"] if self.ds.raters() and
                                          strategy.needs_raters else [])
        aug = (ultrasound_augment(label_keys=label_keys, strength=cfg.augment)
               if cfg.augment > 0 else None)
        common = {"size": cfg.size, "channels": cfg.channels, "strategy": strategy}
        self.train_set = SegmentationDataset(self.ds, self.items["train"], transform=aug,
                                             seed=cfg.seed, **common)
        self.val_set = SegmentationDataset(self.ds, self.items["val"], **common)
        self.test_set = SegmentationDataset(self.ds, self.items["test"], **common)
        self._check_targets()
        self._ready = True

    def _check_targets(self) -> None:
        """Refuse classes with no marked pixel and strategies that ignore everything."""
        strategy = self.cfg.label_strategy
        probe = SegmentationDataset(self.ds, self.items["train"], size=self.cfg.size,
                                    channels=self.cfg.channels, strategy=strategy, cache=False)
        n = len(probe)
        step = max(1, n // 64)  # a sample of up to ~64 items keeps this quick
        marked = [0.0] * len(self.ds.classes)
        weight_sum = 0.0
        for i in range(0, n, step):
            s = probe[i]
            weight_sum += float(s["weight"].sum())
            for k in range(len(self.ds.classes)):
                marked[k] += float(s["conf"][k].gt(0).sum())
        empty = [c for c, m in zip(self.ds.classes, marked, strict=True) if m == 0]
        if len(empty) == len(self.ds.classes) or (empty and step == 1):
            raise ConfsegError(f"{self.cfg.data}: class {empty[0]!r} has no marked pixel in the "
                               f"training folds of fold {self.cfg.fold}; annotate it or drop it")
        if weight_sum == 0:
            raise ConfsegError(f"strategy {strategy.spec!r} gives every training pixel weight 0 "
                               "(all ignored); widen the band or pick another strategy")

    def set_epoch(self, epoch: int) -> None:
        """Tell the training set which epoch is next (seeds its augmentation)."""
        self.train_set.epoch = epoch

    def _loader(self, ds: SegmentationDataset, *, shuffle: bool) -> DataLoader:
        return DataLoader(ds, batch_size=self.cfg.batch_size, shuffle=shuffle,
                          num_workers=self.cfg.num_workers, drop_last=False,
                          persistent_workers=False)

    def train_dataloader(self) -> DataLoader:  # noqa: D102
        return self._loader(self.train_set, shuffle=True)

    def val_dataloader(self) -> DataLoader:  # noqa: D102
        return self._loader(self.val_set, shuffle=False)

    def test_dataloader(self) -> DataLoader:  # noqa: D102
        return self._loader(self.test_set, shuffle=False)
