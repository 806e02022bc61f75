"""Preprocessing (letterbox to a fixed size) and ultrasound-suited MONAI augmentation.

Augmentations keep ultrasound geometry plausible: small rotations and scaling, horizontal
flips (left/right probe orientation), gamma/contrast and gain changes, multiplicative
speckle noise. Never a vertical flip: the probe is always at the top.

Confidence, rater and validity maps are resampled with nearest-neighbour so confidence
levels survive augmentation exactly; the label strategy is applied afterwards.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from monai.transforms import (
    Compose,
    MapTransform,
    RandAdjustContrastd,
    RandAffined,
    RandFlipd,
    Randomizable,
    RandScaleIntensityd,
)


@dataclass(frozen=True, kw_only=True)
class Letterbox:
    """How an image was fitted into a square canvas: scale, then pad bottom/right.

    Attributes:
        height: Original height.
        width: Original width.
        size: Canvas side.
        new_height: Height after scaling.
        new_width: Width after scaling.
    """

    height: int
    width: int
    size: int
    new_height: int
    new_width: int

    @classmethod
    def fit(cls, height: int, width: int, size: int) -> Letterbox:
        """Scale so the longer side becomes ``size``, keeping the aspect ratio."""
        s = size / max(height, width)
        return cls(height=height, width=width, size=size,
                   new_height=max(1, round(height * s)), new_width=max(1, round(width * s)))

    def apply(self, arr: torch.Tensor, *, mode: str) -> torch.Tensor:
        """Fit a ``(C, H, W)`` tensor into the canvas (zero padding)."""
        x = arr.unsqueeze(0).float()
        if (self.new_height, self.new_width) != (self.height, self.width):
            x = _resize(x, (self.new_height, self.new_width), mode, antialias=True)
        x = F.pad(x, (0, self.size - self.new_width, 0, self.size - self.new_height))
        return x[0]

    def valid(self) -> torch.Tensor:
        """``(1, size, size)`` mask of canvas pixels that hold image (not padding)."""
        v = torch.zeros(1, self.size, self.size)
        v[:, : self.new_height, : self.new_width] = 1.0
        return v

    def invert(self, arr: torch.Tensor, *, mode: str = "bilinear") -> torch.Tensor:
        """Map a ``(C, size, size)`` canvas tensor back to the original ``(C, H, W)``."""
        x = arr[:, : self.new_height, : self.new_width].unsqueeze(0).float()
        if (self.new_height, self.new_width) != (self.height, self.width):
            x = _resize(x, (self.height, self.width), mode, antialias=False)
        return x[0]


def _resize(x: torch.Tensor, size: tuple[int, int], mode: str, *, antialias: bool
            ) -> torch.Tensor:
    """Resize ``(N, C, H, W)``.

    ``nearest`` is centre-aligned (``nearest-exact``) so label maps do not shift by a pixel.
    """
    if mode == "nearest":
        return F.interpolate(x, size=size, mode="nearest-exact")
    return F.interpolate(x, size=size, mode=mode, align_corners=False, antialias=antialias)


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


def ultrasound_augment(*, image_key: str = "image",
                       label_keys: Sequence[str] = ("conf", "valid"),
                       strength: float = 1.0) -> Compose:
    """MONAI dictionary augmentation for ultrasound frames.

    Args:
        image_key: Key of the ``(C, H, W)`` image in [0, 1].
        label_keys: Keys resampled with nearest-neighbour alongside the image.
        strength: Scales rotation/scale/intensity ranges (0 disables geometry jitter).
    """
    keys = [image_key, *label_keys]
    modes = ["bilinear"] + ["nearest"] * len(label_keys)
    pads = ["zeros"] * len(keys)
    return Compose([
        RandAffined(keys=keys, prob=0.7, rotate_range=0.17 * strength,  # ~10 degrees
                    scale_range=(0.1 * strength, 0.1 * strength),
                    translate_range=(8 * strength, 8 * strength),
                    mode=modes, padding_mode=pads),
        RandFlipd(keys=keys, prob=0.5, spatial_axis=1),  # horizontal only
        RandAdjustContrastd(keys=[image_key], prob=0.3,
                            gamma=(1 - 0.3 * strength, 1 + 0.5 * strength)),
        RandScaleIntensityd(keys=[image_key], factors=0.15 * strength, prob=0.3),
        RandSpeckled(keys=[image_key], prob=0.3),
    ])
