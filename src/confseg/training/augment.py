"""Ultrasound-suited MONAI augmentation.

Augmentations keep ultrasound geometry plausible: small rotations and scaling, horizontal
flips (left/right probe orientation), gamma/contrast and gain changes, multiplicative
speckle noise. Never a vertical flip: the probe is always at the top.

Confidence, rater and validity maps are resampled with nearest-neighbour so confidence
levels survive augmentation exactly; the label strategy is applied afterwards.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from monai.data.meta_obj import get_track_meta, set_track_meta
from monai.transforms import (
    Compose,
    MapTransform,
    RandAdjustContrastd,
    RandAffined,
    RandFlipd,
    Randomizable,
    RandScaleIntensityd,
)


class RandSpeckled(Randomizable, MapTransform):
    """Multiplicative speckle-like noise: ``x * g`` with ``g`` ~ Gamma(k, 1/k), mean 1.

    Args:
        keys: Image keys.
        prob: Probability of applying.
        looks: Gamma shape ``k``: larger means weaker noise (std = 1/sqrt(k)).
    """

    def __init__(self, keys: Sequence[Hashable], *, prob: float = 0.3,
                 looks: tuple[float, float] = (8.0, 30.0)) -> None:
        MapTransform.__init__(self, keys)
        self.prob = prob
        self.looks = looks
        self._do = False
        self._k = looks[1]

    def randomize(self, data: Any = None) -> None:  # noqa: D102
        self._do = self.R.random() < self.prob
        self._k = float(self.R.uniform(*self.looks))

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:  # noqa: D102
        d = dict(data)
        self.randomize()
        if not self._do:
            return d
        for key in self.key_iterator(d):
            x = torch.as_tensor(d[key])
            g = self.R.gamma(self._k, 1.0 / self._k, size=tuple(x.shape)).astype(np.float32)
            d[key] = (x * torch.from_numpy(g)).clamp_(0.0, 1.0)
        return d


class UntrackedCompose(Compose):
    """A Compose that runs with MONAI's metadata tracking off and returns plain tensors.

    Training samples need no affine metadata or inverse: with it a 128-px QUBIQ sample took
    10.0 ms, without it 6.7 ms (the same sample). The switch is MONAI's process-wide one, restored
    after each call (the training loader calls it from one thread per process).
    """

    def __call__(self, input_: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: D102
        tracked = get_track_meta()
        set_track_meta(False)
        try:
            return super().__call__(input_, *args, **kwargs)
        finally:
            set_track_meta(tracked)


def ultrasound_augment(*, image_key: str = "image",
                       label_keys: Sequence[str] = ("conf", "valid"),
                       strength: float = 1.0) -> Compose:
    """MONAI dictionary augmentation for ultrasound frames.

    Args:
        image_key: Key of the ``(C, H, W)`` image in [0, 1].
        label_keys: Keys resampled with nearest-neighbour alongside the image (a key a sample
            lacks is skipped).
        strength: Scales rotation/scale/intensity ranges (0 disables geometry jitter).
    """
    keys = [image_key, *label_keys]
    modes = ["bilinear"] + ["nearest"] * len(label_keys)
    pads = ["zeros"] * len(keys)
    return UntrackedCompose([
        RandAffined(keys=keys, prob=0.7, rotate_range=0.17 * strength,  # ~10 degrees
                    scale_range=(0.1 * strength, 0.1 * strength),
                    translate_range=(8 * strength, 8 * strength),
                    mode=modes, padding_mode=pads, allow_missing_keys=True),
        RandFlipd(keys=keys, prob=0.5, spatial_axis=1, allow_missing_keys=True),  # horizontal
        RandAdjustContrastd(keys=[image_key], prob=0.3,
                            gamma=(1 - 0.3 * strength, 1 + 0.5 * strength)),
        RandScaleIntensityd(keys=[image_key], factors=0.15 * strength, prob=0.3),
        RandSpeckled(keys=[image_key], prob=0.3),
    ])
