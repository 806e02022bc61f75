"""A PyTorch ``Dataset`` over a native confseg dataset.

Each sample is a dict of tensors at a fixed square ``size`` (letterboxed, padding marked
invalid):

- ``image``  ``(C, S, S)`` float32 in [0, 1]
- ``conf``   ``(K, S, S)`` float32 confidence in [0, 1]
- ``valid``  ``(1, S, S)`` 1 where a pixel counts (image, not padding, not in ignore/)
- ``raters`` ``(R, K, S, S)`` when the dataset has raters and the strategy reads them (or
  none is set); an absent rater is zeros
- ``target``, ``weight`` ``(K, S, S)`` when a strategy is given (weight already includes
  ``valid``)
- ``id``, ``patient`` strings
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset as TorchDataset

from confseg.data import Dataset
from confseg.data.schema import Item
from confseg.errors import StrategyError
from confseg.preprocess import Letterbox, to_channels
from confseg.targets import Strategy, parse_strategy


class SegmentationDataset(TorchDataset):
    """Samples of a native dataset, resized/padded to ``size``.

    Args:
        dataset: A loaded :class:`~confseg.data.dataset.Dataset`.
        items: Items to serve (default: all image items).
        size: Square canvas side.
        channels: Model input channels (grey images are repeated, colour averaged).
        strategy: Label strategy (object or string) producing ``target``/``weight``.
        transform: A dictionary transform (e.g. :func:`confseg.training.augment.ultrasound_augment`)
            applied before the strategy.
        cache: Keep decoded, letterboxed arrays in memory (uint8) after first use.
        seed: Base seed. Augmentation and the rater draw of sample ``i`` in epoch ``e`` are
            seeded from ``(seed, e, i)``, so results do not depend on worker count or on
            resuming; set :attr:`epoch` before each epoch.
    """

    def __init__(self, dataset: Dataset, items: Sequence[Item] | None = None, *, size: int = 256,
                 channels: int = 1, strategy: Strategy | str | None = None,
                 transform: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
                 cache: bool = True, seed: int = 0) -> None:
        self.ds = dataset
        self.items = list(items) if items is not None else dataset.image_items()
        self.size = int(size)
        self.channels = int(channels)
        self.strategy = parse_strategy(strategy) if strategy is not None else None
        self.transform = transform
        self.cache = cache
        self.rater_names = dataset.raters()
        self._cache: dict[int, dict[str, Any]] = {}
        self.seed = int(seed)
        self.epoch = 0
        if self.strategy is not None:
            check_strategy_fits(self.strategy, dataset, self.items)

    def __len__(self) -> int:
        return len(self.items)

    @property
    def serves_raters(self) -> bool:
        """Whether samples carry ``raters``: the dataset has them and the strategy reads them.

        Augmenting seven unused rater maps made a QUBIQ sample half again as slow.
        """
        return bool(self.rater_names) and (self.strategy is None or self.strategy.needs_raters)

    def letterbox(self, index: int) -> Letterbox:
        """The letterbox geometry of sample ``index``."""
        return self._load(index)["box"]

    def _load(self, index: int) -> dict[str, Any]:
        if index in self._cache:
            return self._cache[index]
        it = self.items[index]
        img = to_channels(self.ds.read_image(it), self.channels)
        h, w = img.shape[1:]
        box = Letterbox.fit(h, w, self.size)
        conf = np.stack([self.ds.read_confidence(it, c, (h, w)) for c in self.ds.classes])
        valid = np.ones((1, h, w), np.float32)
        ign = self.ds.read_ignore(it)
        if ign is not None:
            valid[0][ign] = 0.0
        rec: dict[str, Any] = {
            "box": box,
            "image": _u8(box.apply(torch.from_numpy(img), mode="bilinear"), 255.0),
            "conf": _u8(box.apply(torch.from_numpy(conf) * 100, mode="nearest")),
            "valid": _u8(box.apply(torch.from_numpy(valid), mode="nearest") * box.valid()),
        }
        # rater maps are read only for a strategy that uses them (or none): not read, not cached
        present = [r for r in self.rater_names if r in it.raters] if self.serves_raters else []
        if present:
            rat = np.stack([
                np.stack([self.ds.read_rater(it, r, c, (h, w)) for c in self.ds.classes])
                for r in self.rater_names])
            rk = torch.from_numpy(rat).reshape(-1, h, w) * 100
            rec["raters"] = _u8(box.apply(rk, mode="nearest")).reshape(
                len(self.rater_names), len(self.ds.classes), self.size, self.size)
            rec["rater_present"] = [r in it.raters for r in self.rater_names]
        if self.cache:
            self._cache[index] = rec
        return rec

    def __getitem__(self, index: int) -> dict[str, Any]:
        rec = self._load(index)
        it = self.items[index]
        sample: dict[str, Any] = {
            "image": rec["image"].float() / 255.0,
            "conf": rec["conf"].float() / 100.0,
            "valid": rec["valid"].float(),
        }
        nk = len(self.ds.classes)
        if "raters" in rec:
            sample["raters"] = rec["raters"].reshape(-1, self.size, self.size).float() / 100.0
        sample_seed = (self.seed * 1_000_003 + self.epoch * 100_003 + index) % (2**32)
        if self.transform is not None:
            if hasattr(self.transform, "set_random_state"):
                self.transform.set_random_state(seed=sample_seed)
            sample = dict(self.transform(sample))
            sample = {k: torch.as_tensor(v).as_subclass(torch.Tensor) for k, v in sample.items()}
        if "raters" in sample:
            sample["raters"] = sample["raters"].reshape(-1, nk, self.size, self.size)
        if self.strategy is not None:
            rng = np.random.default_rng(sample_seed)
            sample["target"], sample["weight"] = self._targets(sample, rec, it, rng)
        sample["id"] = it.id
        sample["patient"] = it.patient
        return sample

    def _targets(self, sample: dict[str, Any], rec: dict[str, Any], it: Item,
                 rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """The strategy's target and weight; it sees only the raters who annotated ``it``."""
        assert self.strategy is not None
        present = [i for i, ok in enumerate(rec.get("rater_present", [])) if ok]
        raters = sample["raters"].numpy()[present] if present else None
        try:
            t, w = self.strategy.apply(sample["conf"].numpy(), raters=raters,
                                       rater_names=[self.rater_names[i] for i in present],
                                       rng=rng)
        except StrategyError as exc:
            raise StrategyError(f"item {it.id!r}: {exc}") from None
        weight = torch.from_numpy(w) * sample["valid"]
        return torch.from_numpy(t), weight


def check_strategy_fits(strategy: Strategy, dataset: Dataset, items: Sequence[Item]) -> None:
    """Refuse a strategy the data cannot serve (before any training starts).

    Raises:
        StrategyError: a rater strategy on a dataset without raters, or a named rater that
            some of ``items`` lack.
    """
    if not strategy.needs_raters:
        return
    names = dataset.raters()
    if not names:
        raise StrategyError(f"strategy {strategy.spec!r} needs rater masks, but {dataset.root} "
                            "has no raters/; pick another strategy")
    name = getattr(strategy, "name", None)
    if name and name not in names:
        raise StrategyError(f"rater {name!r} is not in {dataset.root}; raters are {names}")
    lacking = [it.id for it in items if (name and name not in it.raters) or not it.raters]
    if lacking:
        raise StrategyError(f"strategy {strategy.spec!r}: {len(lacking)} item(s) have no mask "
                            f"from {'rater ' + repr(name) if name else 'any rater'} (first: "
                            f"{lacking[0]!r}); pick another strategy or annotate them")


def _u8(x: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """Store a float tensor compactly as uint8 after multiplying by ``scale``."""
    return (x * scale).round_().clamp_(0, 255).to(torch.uint8)
