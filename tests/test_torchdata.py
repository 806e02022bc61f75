import json

import numpy as np
import pytest
import torch

from confseg.data import load_dataset
from confseg.errors import StrategyError
from confseg.preprocess import Letterbox, to_channels
from confseg.training.augment import ultrasound_augment
from confseg.training.torchdata import SegmentationDataset

from conftest import write_tiny_dataset


@pytest.fixture
def ds(tmp_path):
    return load_dataset(write_tiny_dataset(tmp_path / "ds", raters=2, ignore=True))


def test_letterbox_shapes_padding_and_levels(ds):
    sd = SegmentationDataset(ds, size=48, strategy="threshold:0.6")
    s = sd[0]
    assert s["image"].shape == (1, 48, 48) and s["conf"].shape == (2, 48, 48)
    # 32x40 -> 38x48 (scale 1.2), padded at the bottom: rows 38.. are invalid.
    box = sd.letterbox(0)
    assert (box.new_height, box.new_width) == (38, 48)
    assert s["valid"][0, 38:].sum() == 0 and s["weight"][:, 38:].sum() == 0
    # ignore/ marks the first two source columns -> left canvas columns are invalid.
    assert s["valid"][0, :38, 0].sum() == 0 and s["valid"][0, :38, 10].all()
    levels = set(np.unique(np.round(s["conf"].numpy() * 100)).tolist())
    assert levels <= {0, 20, 40, 60, 80, 100}
    np.testing.assert_array_equal(s["target"].numpy(),
                                  ((s["conf"] >= 0.6 - 1e-6) & (s["conf"] > 0)).float().numpy())


def test_letterbox_invert_round_trip():
    box = Letterbox.fit(30, 50, 64)
     # Blocky maps (10x10 cells) survive centre-aligned nearest resampling up and back.
    x = torch.rand(2, 3, 5).repeat_interleave(10, 1).repeat_interleave(10, 2)
    back = box.invert(box.apply(x, mode="nearest"), mode="nearest")
    assert back.shape == (2, 30, 50)
    assert (back != x).float().mean() == 0


def test_augmentation_is_a_function_of_seed_epoch_index(ds):
    def make():
        aug = ultrasound_augment(label_keys=("conf", "valid", "raters"))
        return SegmentationDataset(ds, size=48, strategy="soft", transform=aug, seed=5)
    a, b = make(), make()
    b[1], b[0]  # different call order must not matter
    assert torch.equal(a[0]["image"], b[0]["image"])
    a.epoch = 1
    assert not torch.equal(a[0]["image"], b[0]["image"])


def test_augmentation_keeps_levels_and_alignment(ds):
    aug = ultrasound_augment(label_keys=("conf", "valid", "raters"))
    sd = SegmentationDataset(ds, size=48, strategy="rater", transform=aug)
    assert "raters" not in SegmentationDataset(ds, size=48, strategy="soft")[0]  # unused: unread
    for i in range(len(sd)):
        s = sd[i]
        assert set(np.unique(np.round(s["conf"].numpy() * 100)).tolist()) <= {
            0, 20, 40, 60, 80, 100}
        assert s["image"].min() >= 0 and s["image"].max() <= 1
        assert s["raters"].shape == (2, 2, 48, 48)
        assert isinstance(s["image"], torch.Tensor) and type(s["image"]) is torch.Tensor


def test_rater_strategy_draws_per_epoch_deterministically(ds):
    sd = SegmentationDataset(ds, size=32, strategy="rater", seed=0)
    i = next(i for i in range(len(sd))
             if not torch.equal(sd[i]["raters"][0], sd[i]["raters"][1]))  # raters disagree
    draws = []
    for epoch in range(12):
        sd.epoch = epoch
        s = sd[i]
        match = [bool(torch.equal(s["target"], s["raters"][r])) for r in range(2)]
        assert sum(match) == 1
        draws.append(match.index(True))
    assert set(draws) == {0, 1}  # both raters drawn over epochs
    sd.epoch = 3
    again = sd[i]["target"]
    sd2 = SegmentationDataset(ds, size=32, strategy="rater", seed=0)
    sd2.epoch = 3
    assert torch.equal(again, sd2[i]["target"])  # same (seed, epoch, index) -> same draw
    r1 = SegmentationDataset(ds, size=32, strategy="rater:r1")[0]
    np.testing.assert_array_equal(r1["target"].numpy(), r1["raters"][0].numpy())


def test_rater_strategy_without_raters_is_an_error(tmp_path):
    ds = load_dataset(write_tiny_dataset(tmp_path / "nr"))
    with pytest.raises(StrategyError, match=r"needs rater masks, but .* has no raters/"):
        SegmentationDataset(ds, strategy="rater")
    with pytest.raises(StrategyError, match="rater 'zz' is not in"):
        SegmentationDataset(load_dataset(write_tiny_dataset(tmp_path / "r", raters=1)),
                            strategy="rater:zz")


def test_channels_and_rgb(tmp_path):
    ds = load_dataset(write_tiny_dataset(tmp_path / "rgb", rgb=True))
    assert SegmentationDataset(ds, size=32, channels=3)[0]["image"].shape == (3, 32, 32)
    assert SegmentationDataset(ds, size=32, channels=1)[0]["image"].shape == (1, 32, 32)
    assert to_channels(np.full((2, 2), 65535, np.uint16), 1).max() == 1.0


def test_works_with_dataloader_workers(ds):
    sd = SegmentationDataset(ds, size=32, strategy="weighted")
    dl = torch.utils.data.DataLoader(sd, batch_size=4, num_workers=2)
    batch = next(iter(dl))
    assert batch["target"].shape == (4, 2, 32, 32) and len(batch["id"]) == 4


def test_a_new_multirater_strategy_is_one_class(ds):
    # Strategies receive confidence, the item's raters (with names) and an rng through one
    # signature, so a soft mean of raters needs no change to the torch Dataset.
    from dataclasses import dataclass

    from confseg.targets import Strategy

    @dataclass(frozen=True, kw_only=True)
    class RaterMean(Strategy):
        needs_raters = True

        @property
        def spec(self) -> str:
            return "rater-mean"

        def apply(self, conf, *, raters=None, rater_names=(), rng=None):
            assert list(rater_names) == ["r1", "r2"] and rng is not None
            m = np.asarray(raters).mean(axis=0)
            return m, np.ones_like(m)

    s = SegmentationDataset(ds, size=32, strategy=RaterMean())[0]
    torch.testing.assert_close(s["target"], s["raters"].mean(dim=0))


def test_named_rater_missing_on_an_item_is_refused(tmp_path):
    root = write_tiny_dataset(tmp_path / "r", raters=2)
    obj = json.loads((root / "dataset.json").read_text())
    obj["items"][1]["raters"].pop("r2")
    (root / "dataset.json").write_text(json.dumps(obj))
    with pytest.raises(StrategyError, match=r"1 item\(s\) have no mask from rater 'r2'"):
        SegmentationDataset(load_dataset(root), strategy="rater:r2")
    SegmentationDataset(load_dataset(root), strategy="rater")  # every item has some rater


def test_strategy_slug_is_folder_safe():
    from confseg.targets import parse_strategy

    assert parse_strategy("threshold:0.6").slug == "threshold-0.6"
    assert parse_strategy("ignore:0.2-0.6").slug == "ignore-0.2-0.6"
    assert parse_strategy("rater:r1").slug == "rater-r1"
