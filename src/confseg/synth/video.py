"""Short synthetic clips: the lung slides and B-lines flicker over one breath; MP4 via PyAV."""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from confseg.errors import MediaError
from confseg.io.video import iter_frames
from confseg.io.video_writer import VideoWriter
from confseg.synth.geometry import Geometry
from confseg.synth.image import Speckle, render
from confseg.synth.scene import Scene

FRAMES = 16
FPS = 16


def render_clip(scene: Scene, geom: Geometry, speckle: Speckle, frames: int = FRAMES
                ) -> list[np.ndarray]:
    """``frames`` uint8 frames over one breathing cycle (phase ``i / frames``)."""
    return [render(scene, geom, speckle, phase=i / frames) for i in range(frames)]


def write_mp4(path: str | os.PathLike[str], frames: Sequence[np.ndarray], fps: int = FPS
              ) -> None:
    """Encode grey uint8 frames to an MP4 (H.264, or MPEG-4 part 2 without libx264).

    Odd sizes are padded with black to even ones (yuv420p needs even sizes). Written
    atomically (:class:`confseg.io.video_writer.VideoWriter`).

    Raises:
        MediaError: the frames are empty or of different sizes, or encoding fails.
    """
    if not frames:
        raise MediaError(f"{path}: no frames to write")
    if any(f.shape[:2] != frames[0].shape[:2] for f in frames):
        raise MediaError(f"{path}: frames differ in size; resize them to one size")
    with VideoWriter(path, fps=fps) as w:
        for f in frames:
            w.write(f)


def read_frames(path: str | os.PathLike[str]) -> list[np.ndarray]:
    """Decode every frame of a video as grey uint8 (for tests and checks).

    Delegates to :func:`confseg.io.video.iter_frames`, the one video reader.

    Raises:
        MediaError: the file is missing or cannot be decoded.
    """
    return [frame for _, frame in iter_frames(path)]
