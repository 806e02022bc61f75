"""Image <-> network canvas: letterboxing and channel conversion, one rule each.

Every stage that feeds a model (training, evaluation, inference, export, the annotator's
pre-annotation) goes through these functions, so a model always sees an image prepared the
same way. ``to_channels`` and ``to_display`` need only numpy; ``Letterbox`` imports torch
when it first resamples.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # torch is imported on first use, so the numpy helpers stay light
    import torch


def to_channels(img: np.ndarray, channels: int) -> np.ndarray:
    """Image ``(H, W)`` or ``(H, W, C)`` of any dtype -> ``(channels, H, W)`` float32 in [0, 1]."""
    a = np.asarray(img)
    if np.issubdtype(a.dtype, np.integer):
        scale = 255.0 if a.dtype == np.uint8 else float(max(int(a.max(initial=0)), 1))
        x = a.astype(np.float32) / scale
    else:
        x = a.astype(np.float32)
        lo, hi = float(np.nanmin(x)), float(np.nanmax(x))
        if lo < 0 or hi > 1:
            x = (x - lo) / max(hi - lo, 1e-8)
    x = x[None] if x.ndim == 2 else np.moveaxis(x[..., :3], -1, 0)
    if x.shape[0] == channels:
        return np.ascontiguousarray(x)
    if channels == 1:
        return x.mean(axis=0, keepdims=True)
    if x.shape[0] == 1:
        return np.repeat(x, channels, axis=0)
    raise ValueError(f"cannot map {x.shape[0]} image channels to {channels}")



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
        import torch.nn.functional as F

        x = arr.unsqueeze(0).float()
        if (self.new_height, self.new_width) != (self.height, self.width):
            x = _resize(x, (self.new_height, self.new_width), mode, antialias=True)
        x = F.pad(x, (0, self.size - self.new_width, 0, self.size - self.new_height))
        return x[0]

    def valid(self) -> torch.Tensor:
        """``(1, size, size)`` mask of canvas pixels that hold image (not padding)."""
        import torch

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
    import torch.nn.functional as F

    if mode == "nearest":
        return F.interpolate(x, size=size, mode="nearest-exact")
    return F.interpolate(x, size=size, mode=mode, align_corners=False, antialias=antialias)


def to_display(image: np.ndarray, *, grey: bool = False) -> np.ndarray:
    """An image of any dtype as uint8 for display, scaled by the same rule the model sees.

    Reports, overlays and the annotator use this, so a clinician paints an image at the
    contrast the network is fed (:func:`to_channels`): uint8 as is, other integers divided by
    the image maximum, floats outside [0, 1] min-max scaled; NaN pixels show black.

    Args:
        image: ``(H, W)``, ``(H, W, 1)`` or ``(H, W, C)``.
        grey: Average colour channels into one.

    Returns:
        ``(H, W)`` uint8 for grey input (or ``grey=True``), else ``(H, W, 3)`` uint8.
    """
    a = np.asarray(image)
    single = a.ndim == 2 or (a.ndim == 3 and a.shape[-1] == 1)
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    x = to_channels(a, 1 if (grey or single) else 3)
    out = np.rint(np.nan_to_num(np.clip(x, 0.0, 1.0), nan=0.0) * 255.0).astype(np.uint8)
    return out[0] if out.shape[0] == 1 else np.ascontiguousarray(np.moveaxis(out, 0, -1))
