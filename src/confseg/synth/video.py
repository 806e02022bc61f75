"""Short synthetic clips: the lung slides and B-lines flicker over one breath; MP4 via PyAV."""

from __future__ import annotations

import os
from collections.abc import Sequence

import av
import numpy as np

from confseg.errors import MediaError
from confseg.io.atomic import atomic_path
from confseg.io.video import iter_frames
from confseg.synth.geometry import Geometry
from confseg.synth.image import Speckle, render
from confseg.synth.scene import Scene

FRAMES = 16
FPS = 16


def render_clip(scene: Scene, geom: Geometry, speckle: Speckle, frames: int = FRAMES
                ) -> list[np.ndarray]:
    """``frames`` uint8 frames over one breathing cycle (phase ``i / frames``)."""
    return [render(scene, geom, speckle, phase=i / frames) for i in range(frames)]


def _codec() -> str:
    return "libx264" if "libx264" in av.codecs_available else "mpeg4"


def write_mp4(path: str | os.PathLike[str], frames: Sequence[np.ndarray], fps: int = FPS
              ) -> None:
    """Encode grey uint8 frames to an MP4 (H.264, or MPEG-4 part 2 without libx264).

    Odd sizes are padded with black to even ones (yuv420p needs even sizes). Written
    atomically.

    Raises:
        MediaError: the frames are empty or of different sizes, or encoding fails.
    """
    if not frames:
        raise MediaError(f"{path}: no frames to write")
    h, w = frames[0].shape[:2]
    if any(f.shape[:2] != (h, w) for f in frames):
        raise MediaError(f"{path}: frames differ in size; resize them to one size")
    he, we = h + h % 2, w + w % 2
    codec = _codec()
    with atomic_path(path, suffix=".mp4") as tmp:
        try:
            with av.open(str(tmp), mode="w", format="mp4") as container:
                stream = container.add_stream(codec, rate=fps)
                stream.width, stream.height, stream.pix_fmt = we, he, "yuv420p"
                if codec == "libx264":
                    stream.options = {"crf": "20", "preset": "veryfast", "threads": "1"}
                else:
                    stream.bit_rate = 2_000_000
                for f in frames:
                    g = np.zeros((he, we), dtype=np.uint8)
                    g[:h, :w] = f
                    frame = av.VideoFrame.from_ndarray(g, format="gray")
                    for packet in stream.encode(frame):
                        container.mux(packet)
                for packet in stream.encode():
                    container.mux(packet)
        except (av.FFmpegError, ValueError) as exc:
            raise MediaError(f"{path}: cannot encode video ({exc})") from exc


def read_frames(path: str | os.PathLike[str]) -> list[np.ndarray]:
    """Decode every frame of a video as grey uint8 (for tests and checks).

    Delegates to :func:`confseg.io.video.iter_frames`, the one video reader.

    Raises:
        MediaError: the file is missing or cannot be decoded.
    """
    return [frame for _, frame in iter_frames(path)]
