"""Predict a whole video: decode, infer and encode overlap (threads and bounded queues).

Decoding runs in one thread, the overlay encoder in another, inference in the caller's; each
hands over through a bounded queue, so the slowest stage sets the pace and memory stays flat
in video length. Probabilities are written per batch as compressed ``.npz`` chunks (float16,
at the model-canvas resolution with the aspect ratio kept).

::

    <out>/<stem>/
      video.json               source, sampling, classes, frames, seconds, frames/s
      probs_<first>.npz        prob (n, K, h, w) float16, index (n,) frame indices
      overlay.mp4              the frames with coloured probabilities (``overlay=True``)
"""

from __future__ import annotations

import json
import os
import queue
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from confseg.inference.ensemble import ProbabilityModel
from confseg.inference.video import SegmentedFrame, segment_frames
from confseg.io.atomic import atomic_write_text
from confseg.io.video import iter_frames, probe_video
from confseg.io.video_writer import VideoWriter
from confseg.viz.overlay import overlay_confidence

_END = object()
ProgressFn = Callable[[int, float], None]


def _threaded(it: Iterator[Any], maxsize: int) -> Iterator[Any]:
    """Run ``it`` in a thread, yield its items through a bounded queue (errors re-raised)."""
    q: queue.Queue[Any] = queue.Queue(maxsize=maxsize)
    stop = threading.Event()

    def work() -> None:
        try:
            for item in it:
                if stop.is_set():
                    return
                q.put(item)
        except BaseException as exc:  # handed to the consumer
            q.put(exc)
        q.put(_END)

    t = threading.Thread(target=work, daemon=True, name="decode")
    t.start()
    try:
        while (item := q.get()) is not _END:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while t.is_alive():  # unblock a producer waiting on a full queue
            try:
                q.get_nowait()
            except queue.Empty:
                t.join(0.05)


class _Encoder:
    """Overlay frames encoded to MP4 in a thread behind a bounded queue."""

    def __init__(self, path: Path, fps: float, maxsize: int) -> None:
        self.q: queue.Queue[Any] = queue.Queue(maxsize=maxsize)
        self.error: BaseException | None = None
        self.path, self.fps = path, fps
        self.thread = threading.Thread(target=self._run, daemon=True, name="encode")
        self.thread.start()

    def _run(self) -> None:
        try:
            with VideoWriter(self.path, fps=self.fps) as w:
                while (item := self.q.get()) is not _END:
                    w.write(overlay_confidence(item.image, item.prob))
        except BaseException as exc:
            self.error = exc
            while self.q.get() is not _END:  # drain so the producer never blocks
                pass

    def put(self, fr: SegmentedFrame) -> None:
        self.q.put(fr)

    def close(self) -> None:
        self.q.put(_END)
        self.thread.join()
        if self.error is not None:
            raise self.error


def predict_video(model: ProbabilityModel, path: str | os.PathLike[str],
                  out: str | os.PathLike[str], *, every: int = 1, max_frames: int | None = None,
                  batch_size: int = 8, overlay: bool = False,
                  progress: ProgressFn | None = None) -> dict[str, Any]:
    """Segment ``path`` into ``out/<stem>/``; returns the ``video.json`` object.

    Args:
        model: A Predictor, an Ensemble or a BundlePredictor.
        path: The video (MP4/AVI/..., DICOM cine).
        out: Output folder.
        every: Take every k-th frame.
        max_frames: At most this many frames.
        batch_size: Frames per forward pass.
        overlay: Also write ``overlay.mp4``.
        progress: Called with (frames done, running frames/s).
    """
    src = Path(path)
    info = probe_video(src)
    dest = Path(out) / src.stem
    dest.mkdir(parents=True, exist_ok=True)
    frames = _threaded(iter_frames(src, every=every, max_frames=max_frames), 2 * batch_size)
    encoder = (_Encoder(dest / "overlay.mp4", (info.fps or 16) / every, 2 * batch_size)
               if overlay else None)
    t0 = time.perf_counter()
    done, chunk, chunks = 0, [], []
    try:
        for fr in segment_frames(model, frames, info, batch_size=batch_size):
            chunk.append(fr)
            if encoder is not None:
                encoder.put(fr)
            done += 1
            if len(chunk) == batch_size:
                chunks.append(_write_chunk(dest, chunk))
                chunk = []
            if progress is not None:
                progress(done, done / max(time.perf_counter() - t0, 1e-9))
        if chunk:
            chunks.append(_write_chunk(dest, chunk))
    finally:
        if encoder is not None:
            encoder.close()
    seconds = time.perf_counter() - t0
    meta = {"source": str(src), "sampling": {"every": every, "max_frames": max_frames},
            "classes": list(model.classes), "frames": done, "chunks": chunks,
            "video": {"frames": info.frames, "fps": info.fps, "width": info.width,
                      "height": info.height},
            "seconds": round(seconds, 3), "frames_per_second": round(done / max(seconds, 1e-9),
                                                                      2),
            "overlay": "overlay.mp4" if overlay else None}
    atomic_write_text(dest / "video.json", json.dumps(meta, indent=1) + "\n")
    return meta


def _write_chunk(dest: Path, chunk: list[SegmentedFrame]) -> str:
    name = f"probs_{chunk[0].index:06d}.npz"
    tmp = dest / f".{name}.tmp.npz"
    np.savez_compressed(tmp, prob=np.stack([f.prob for f in chunk]).astype(np.float16),
                        index=np.array([f.index for f in chunk]))
    os.replace(tmp, dest / name)
    return name
