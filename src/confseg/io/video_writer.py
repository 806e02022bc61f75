"""Write a video frame by frame (PyAV, MP4), atomically: a temp file renamed on success."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from types import TracebackType

import av
import numpy as np

from confseg.errors import MediaError
from confseg.io.atomic import atomic_path


def mp4_codec() -> str:
    """H.264 when this FFmpeg has libx264, else MPEG-4 part 2."""
    return "libx264" if "libx264" in av.codecs_available else "mpeg4"


class VideoWriter:
    """Encode grey ``(H, W)`` or RGB ``(H, W, 3)`` uint8 frames to an MP4, one at a time.

    Odd sizes are padded with black to even ones (yuv420p needs even sizes). Nothing appears
    at ``path`` unless the ``with`` block ends without an error.

    Args:
        path: The MP4 file.
        fps: Frames per second.
    """

    def __init__(self, path: str | os.PathLike[str], *, fps: float = 16) -> None:
        self.path = Path(path)
        self.fps = fps
        self._stack = contextlib.ExitStack()
        self._container = None
        self._stream = None
        self._shape: tuple[int, ...] | None = None
        self.frames = 0

    def __enter__(self) -> VideoWriter:
        tmp = self._stack.enter_context(atomic_path(self.path, suffix=".mp4"))
        try:
            self._container = self._stack.enter_context(av.open(str(tmp), mode="w",
                                                                format="mp4"))
        except av.FFmpegError as exc:
            self._stack.close()
            raise MediaError(f"{self.path}: cannot write video ({exc})") from None
        return self

    def write(self, frame: np.ndarray) -> None:
        """Append one frame (every frame the size of the first)."""
        f = np.asarray(frame, dtype=np.uint8)
        if self._stream is None:
            h, w = f.shape[:2]
            codec = mp4_codec()
            self._stream = self._container.add_stream(codec, rate=round(self.fps))
            self._stream.width, self._stream.height = w + w % 2, h + h % 2
            self._stream.pix_fmt = "yuv420p"
            if codec == "libx264":
                self._stream.options = {"crf": "20", "preset": "veryfast", "threads": "1"}
            else:
                self._stream.bit_rate = 2_000_000
            self._shape = f.shape
        if f.shape != self._shape:
            raise MediaError(f"{self.path}: frame {self.frames} is {f.shape}, the first was "
                             f"{self._shape}; every frame must have one size")
        he, we = self._stream.height, self._stream.width
        canvas = np.zeros((he, we, *f.shape[2:]), dtype=np.uint8)
        canvas[: f.shape[0], : f.shape[1]] = f
        vf = av.VideoFrame.from_ndarray(canvas, format="rgb24" if f.ndim == 3 else "gray")
        try:
            for packet in self._stream.encode(vf):
                self._container.mux(packet)
        except (av.FFmpegError, ValueError) as exc:
            raise MediaError(f"{self.path}: cannot encode frame {self.frames} ({exc})") from None
        self.frames += 1

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        try:
            if exc_type is None:
                if self._stream is None:
                    raise MediaError(f"{self.path}: no frames to write")
                for packet in self._stream.encode():
                    self._container.mux(packet)
        except BaseException:
            self._stack.__exit__(*__import__("sys").exc_info())
            raise
        self._stack.__exit__(exc_type, exc, tb)
