"""Segment a video frame by frame: batched inference, one letterbox per video, flat memory.

Frames are read lazily (:func:`confseg.io.video.iter_frames`), sampled (every k-th, at most
M), letterboxed into the model's square canvas with one :class:`~confseg.preprocess.Letterbox`
fitted per video, and run through the model ``batch_size`` at a time; only one batch is in
memory. Probabilities come back at the canvas resolution, cropped to the image (the frame
scaled so its longer side is the model size, aspect ratio kept), which is what per-frame
features need; ``full_size=True`` maps them back to the frame size instead.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F

from confseg.inference.ensemble import ProbabilityModel
from confseg.inference.predictor import Predictor
from confseg.io.video import VideoInfo, iter_frames, probe_video
from confseg.preprocess import Letterbox, to_channels

if TYPE_CHECKING:
    from confseg.inference.bundle import BundlePredictor


@dataclass(frozen=True)
class SegmentedFrame:
    """One sampled frame: its index, the frame as the model saw it, and the probabilities.

    Attributes:
        index: Frame index in the video.
        image: ``(h, w)`` uint8 grey frame at the probabilities' resolution.
        prob: ``(K, h, w)`` float32 probabilities.
    """

    index: int
    image: np.ndarray
    prob: np.ndarray


def segment_video(model: ProbabilityModel, path: str | os.PathLike[str], *, every: int = 1,
                  max_frames: int | None = None, batch_size: int = 16,
                  full_size: bool = False) -> Iterator[SegmentedFrame]:
    """Yield every sampled frame of ``path`` with its class probabilities.

    Args:
        model: A :class:`Predictor` (fast path: one letterbox per video, batched resize), or
            any probability model such as an ensemble (frames at full size, its own batching).
        path: A video file (MP4/AVI/..., or a DICOM cine).
        every: Take every k-th frame.
        max_frames: At most this many frames (spread over the video when its length is known).
        batch_size: Frames per forward pass.
        full_size: Probabilities at the frame's size instead of the canvas's.

    Raises:
        MediaError: the video cannot be read (from :mod:`confseg.io.video`).
    """
    info = probe_video(path)
    frames = iter_frames(path, every=every, max_frames=max_frames, grey=True)
    yield from segment_frames(model, frames, info, batch_size=batch_size, full_size=full_size)


def segment_frames(model: ProbabilityModel, frames: Iterator[tuple[int, np.ndarray]],
                   info: VideoInfo, *, batch_size: int = 16, full_size: bool = False
                   ) -> Iterator[SegmentedFrame]:
    """:func:`segment_video` over ``(index, frame)`` pairs from any source.

    The frames (from a decoder thread, a live feed) must have the size in ``info``.
    """
    if isinstance(model, Predictor):
        yield from _predictor_batches(model, info, frames, batch_size, full_size)
        return
    from confseg.inference.bundle import BundlePredictor

    if isinstance(model, BundlePredictor) and not full_size:
        yield from _bundle_batches(model, frames, batch_size)
        return
    batch: list[tuple[int, np.ndarray]] = []
    for item in frames:
        batch.append(item)
        if len(batch) == batch_size:
            yield from _generic(model, batch, batch_size)
            batch = []
    if batch:
        yield from _generic(model, batch, batch_size)


def _bundle_batches(model: BundlePredictor, frames: Iterator[tuple[int, np.ndarray]],
                    batch_size: int) -> Iterator[SegmentedFrame]:
    """A bundle's fast path: numpy letterbox, one backend call per batch, canvas resolution."""
    batch: list[tuple[int, np.ndarray]] = []
    for item in frames:
        batch.append(item)
        if len(batch) == batch_size:
            yield from _bundle_run(model, batch)
            batch = []
    if batch:
        yield from _bundle_run(model, batch)


def _bundle_run(model: BundlePredictor, batch: list[tuple[int, np.ndarray]]
                ) -> Iterator[SegmentedFrame]:
    grey = [f if f.ndim == 2 else (to_channels(f, 1)[0] * 255).round().astype(np.uint8)
            for _, f in batch]
    prob, small = model.canvas_probs(grey)
    for j, (i, _) in enumerate(batch):
        yield SegmentedFrame(i, small[j], prob[j])


def _generic(model: ProbabilityModel, batch: list[tuple[int, np.ndarray]], batch_size: int
             ) -> Iterator[SegmentedFrame]:
    probs = model.probs_many([f for _, f in batch], batch_size=batch_size)
    for (i, f), p in zip(batch, probs, strict=True):
        yield SegmentedFrame(i, f, p)


def _predictor_batches(model: Predictor, info: VideoInfo,
                       frames: Iterator[tuple[int, np.ndarray]], batch_size: int,
                       full_size: bool) -> Iterator[SegmentedFrame]:
    box = Letterbox.fit(info.height, info.width, model.size)
    batch: list[tuple[int, np.ndarray]] = []
    for item in frames:
        batch.append(item)
        if len(batch) == batch_size:
            yield from _run(model, box, batch, full_size)
            batch = []
    if batch:
        yield from _run(model, box, batch, full_size)


@torch.inference_mode()
def _run(model: Predictor, box: Letterbox, batch: list[tuple[int, np.ndarray]],
         full_size: bool) -> Iterator[SegmentedFrame]:
    """One forward pass: the frames letterboxed onto one canvas, probabilities at their scale.

    Grey uint8 frames (what the decoders give) take the cheap path: one copy onto a zeroed
    canvas that converts and scales in place, and the frame itself as the image when it is
    not resized; anything else goes through :func:`to_channels`.
    """
    h, w = box.new_height, box.new_width
    frames = [f for _, f in batch]
    canvas = torch.zeros(len(frames), model.channels, box.size, box.size)
    grey = all(f.dtype == np.uint8 and f.ndim == 2 for f in frames)
    if grey:
        x = torch.from_numpy(np.stack(frames))[:, None]
    else:
        x = torch.from_numpy(np.stack([to_channels(f, model.channels) for f in frames]))
    resized = (h, w) != (box.height, box.width)
    if resized:
        x = F.interpolate(x.float().div_(255.0) if grey else x, size=(h, w), mode="bilinear",
                          align_corners=False, antialias=True)
        canvas[:, :, :h, :w] = x
    else:
        canvas[:, :, :h, :w] = x  # converts uint8 to float and repeats the grey channel
        if grey:
            canvas[:, :, :h, :w].mul_(1.0 / 255.0)
    z = model.model(canvas.to(model.device)).float().cpu()[:, :, :h, :w]
    if full_size:
        z = F.interpolate(z, size=(box.height, box.width), mode="bilinear", align_corners=False)
    prob = torch.sigmoid(z / model.temperature if model.temperature != 1 else z).numpy()
    if full_size or (grey and not resized):
        images = frames  # the frame is what the model saw
    else:  # the letterboxed frame at the model's scale, as uint8 grey
        images = list(x.mean(1).clamp_(0, 1).mul_(255).round_().to(torch.uint8).numpy())
    for j, (i, _) in enumerate(batch):
        yield SegmentedFrame(i, images[j], prob[j])
