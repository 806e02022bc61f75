"""A live frame feed: a file that is still being written, or a capture device, read by PyAV.

A decoder thread reads frames as they arrive and keeps only the newest ``keep`` of them: when
the consumer (inference) falls behind, the oldest waiting frames are dropped and counted, so
the output never lags the probe by more than ``keep`` frames.

* A **growing file** is followed like ``tail -f``: at its current end the reader waits for
  more bytes, and the feed ends when the file has not grown for ``idle`` seconds. The
  container must be streamable while written: MPEG-TS, Matroska/WebM, fragmented MP4, raw
  H.264 (a plain MP4 is unreadable until its writer closes it).
* A **device** (a path under ``/dev``, e.g. ``/dev/video0``) is opened with FFmpeg's
  ``v4l2`` input on Linux and read until it stops or the caller stops the feed.
"""

from __future__ import annotations

import collections
import io
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import av
import numpy as np

from confseg.errors import MediaError
from confseg.io.video import VideoInfo


class _FollowFile(io.RawIOBase):
    """A read-only, unseekable view of a file that waits at its end while the file grows."""

    def __init__(self, path: Path, *, idle: float, stop: threading.Event) -> None:
        self._fh = open(path, "rb")  # noqa: SIM115 - closed in close()
        self._idle, self._stop = idle, stop
        self._ended = False  # once idle, stay at the end (FFmpeg asks again at EOF)

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        waited = 0.0
        while True:
            n = self._fh.readinto(b)
            if n:
                return n
            if self._ended or self._stop.is_set() or waited >= self._idle:
                self._ended = True
                return 0
            time.sleep(0.01)
            waited += 0.01

    def close(self) -> None:
        self._fh.close()
        super().close()


class LiveFeed:
    """Frames of a live source as they arrive; the newest ``keep`` wait, older ones are dropped.

    Args:
        source: A growing video file, or a device path under ``/dev``.
        keep: Frames that may wait for the consumer (>= 1); more are dropped, oldest first.
        idle: A growing file ends after this many seconds without new bytes.

    Attributes:
        received: Frames decoded so far.
        dropped: Frames dropped because the consumer was behind.

    Raises:
        MediaError: the source does not exist, cannot be opened, or has no video stream (from
            :meth:`start`, or re-raised by :meth:`batches`).
    """

    def __init__(self, source: str | os.PathLike[str], *, keep: int = 8,
                 idle: float = 2.0) -> None:
        self.source = Path(source)
        self.device = str(self.source).startswith("/dev/")
        if not self.device and not self.source.is_file():
            raise MediaError(f"{self.source}: file not found; give the growing video file or "
                             "a device path such as /dev/video0")
        if keep < 1 or idle <= 0:
            raise ValueError(f"keep={keep} must be >= 1 and idle={idle} > 0")
        self.keep, self.idle = int(keep), float(idle)
        self.received = self.dropped = 0
        self.info: VideoInfo | None = None
        self._buf: collections.deque[tuple[int, np.ndarray]] = collections.deque()
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._done = False
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True, name="live-decode")

    def _open(self) -> Any:
        try:
            # probe little: FFmpeg's default probe waits for 5 MB / 5 s of a live feed
            options = {"probesize": "32768", "analyzeduration": "0"}
            if self.device:
                return av.open(str(self.source), format="v4l2", options=options)
            return av.open(_FollowFile(self.source, idle=self.idle, stop=self._stop),
                           metadata_errors="ignore", options=options)
        except (av.FFmpegError, OSError) as exc:
            raise MediaError(f"{self.source}: cannot be read live ({str(exc)[:120]}); give a "
                             "streamable container (MPEG-TS, MKV, fragmented MP4) or a "
                             "device") from None

    def _run(self) -> None:
        try:
            with self._open() as container:
                if not container.streams.video:
                    raise MediaError(f"{self.source}: has no video stream")
                stream = container.streams.video[0]
                rate = stream.average_rate or stream.guessed_rate
                for frame in container.decode(stream):
                    if self._stop.is_set():
                        break
                    image = frame.to_ndarray(format="gray")
                    with self._cond:
                        if self.info is None:
                            self.info = VideoInfo(
                                path=str(self.source), frames=None,
                                fps=float(rate) if rate else None, width=int(frame.width),
                                height=int(frame.height), duration_s=None,
                                codec=str(stream.codec_context.name), channels=1)
                        if len(self._buf) == self.keep:
                            self._buf.popleft()
                            self.dropped += 1
                        self._buf.append((self.received, image))
                        self.received += 1
                        self._cond.notify_all()
        except BaseException as exc:  # handed to the consumer
            self._error = exc if isinstance(exc, MediaError) else MediaError(
                f"{self.source}: live decoding stopped after {self.received} frames "
                f"({str(exc)[:120]})")
        finally:
            with self._cond:
                self._done = True
                self._cond.notify_all()

    def start(self) -> LiveFeed:
        """Start decoding in the background."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop reading (the feed then ends after the frames already waiting)."""
        self._stop.set()
        self._thread.join(timeout=5)

    def batches(self) -> Iterator[list[tuple[int, np.ndarray]]]:
        """Yield every waiting frame as one batch (at most ``keep``) until the source ends.

        Blocks while nothing waits. ``(index, frame)``: the index counts received frames,
        dropped ones included, so gaps show where frames were dropped.
        """
        while True:
            with self._cond:
                while not self._buf and not self._done:
                    self._cond.wait(0.1)
                if self._buf:
                    batch = list(self._buf)
                    self._buf.clear()
                elif self._error is not None:
                    raise self._error
                else:
                    return
            yield batch

    def __enter__(self) -> LiveFeed:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
