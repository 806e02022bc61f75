"""Predict a whole video: decode, infer and encode overlap (threads and bounded queues).

Decoding runs in one thread, npz compression in another, the overlay encoder in a third and
inference in the caller's; each hands over through a bounded queue, so the slowest stage sets
the pace and memory stays flat in video length. Probabilities are written per batch as
``.npz`` chunks at the model-canvas resolution with the aspect ratio kept, as integers under
fast deflate (level 1): 8 bits by default (``round(p * 255)``, a step of 0.004) or 16 bits
(``round(p * 65535)``, a step of 1.5e-5) with ``prob_bits=16``. The writer runs on cores the
model needs: per 256-px two-class frame 16 bits took 3.4-5.5 ms and 8 bits 1.5-1.9 ms in one
run, for files 4-15 times smaller (benchmarks/prob_writer.py; the noisier the model, the larger
the gap), and with a network that costs nothing the whole pipeline ran at about 3 times the
frames/s (benchmarks/video_fps.py, docs/results.md). :func:`read_probs` reads a folder of
either back as float32.

::

    <out>/<stem>/
      video.json               source, sampling (or live: received, dropped), classes,
                               frames, seconds, frames/s
      probs_<first>.npz        prob (n, K, h, w) uint8 (p = prob / 255) or uint16
                               (p = prob / 65535), index (n,) frame indices
      overlay.mp4              the frames with coloured probabilities (``overlay=True``)
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import queue
import threading
import time
import zipfile
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
#: Stored probabilities are ``round(p * scale)``: bits -> (dtype, scale).
PROB_BITS: dict[int, tuple[type[np.unsignedinteger[Any]], int]] = {
    8: (np.uint8, 255), 16: (np.uint16, 65535)}
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


class _Worker:
    """Items handled in a thread behind a bounded queue (the first error re-raised on close).

    Args:
        name: Thread name.
        handle: Called with each item (and the opened resource).
        maxsize: Items that may wait.
        resource: A context manager opened in the thread around all items.
    """

    def __init__(self, name: str, handle: Callable[[Any, Any], None], maxsize: int,
                 resource: Callable[[], Any] = contextlib.nullcontext) -> None:
        self.q: queue.Queue[Any] = queue.Queue(maxsize=maxsize)
        self.error: BaseException | None = None
        self.handle, self.resource = handle, resource
        self.thread = threading.Thread(target=self._run, daemon=True, name=name)
        self.thread.start()

    def _run(self) -> None:
        try:
            with self.resource() as res:
                while (item := self.q.get()) is not _END:
                    self.handle(res, item)
        except BaseException as exc:
            self.error = exc
            while self.q.get() is not _END:  # drain so the producer never blocks
                pass

    def put(self, item: Any) -> None:
        if self.error is not None:
            raise self.error
        self.q.put(item)

    def close(self) -> None:
        self.q.put(_END)
        self.thread.join()
        if self.error is not None:
            raise self.error


#: Chunks between two returns of freed heap memory to the system (:func:`_malloc_trim`).
TRIM_EVERY = 16


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    """The C library's ``malloc_trim`` on glibc (None elsewhere).

    Frames are allocated in the decode thread and freed in others; glibc keeps the freed
    memory in per-thread arenas: with a fast model the peak resident size grew by 49 MB over
    the first 2,000 192x256 frames and 87 MB over the next 2,000. Trimming now and then keeps
    it flat.
    """
    try:
        import ctypes

        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):  # pragma: no cover - not glibc
        return None


class _Sink:
    """Where segmented frames go: npz chunks, the overlay encoder, progress, the frame count."""

    def __init__(self, dest: Path, *, fps: float | None, batch_size: int, overlay: bool,
                 prob_bits: int, progress: ProgressFn | None) -> None:
        self.dest, self.batch_size, self.progress = dest, batch_size, progress
        self.prob_bits = prob_bits
        self.encoder = (_Worker("encode", _write_overlay, 2 * batch_size,
                                lambda: VideoWriter(dest / "overlay.mp4", fps=fps or 16))
                        if overlay else None)
        # compression overlaps inference (zlib releases the GIL)
        self.writer = _Worker("write", lambda _, chunk: _write_chunk(dest, chunk, prob_bits), 2)
        self.done, self.chunk, self.chunks = 0, [], []
        self.t0 = time.perf_counter()

    def _flush(self) -> None:
        self.writer.put(self.chunk)
        self.chunks.append(_chunk_name(self.chunk))
        self.chunk = []
        if len(self.chunks) % TRIM_EVERY == 0 and (trim := _malloc_trim()) is not None:
            trim(0)

    def put(self, fr: SegmentedFrame) -> None:
        self.chunk.append(fr)
        if self.encoder is not None:
            self.encoder.put(fr)
        self.done += 1
        if len(self.chunk) == self.batch_size:
            self._flush()
        if self.progress is not None:
            self.progress(self.done, self.done / max(time.perf_counter() - self.t0, 1e-9))

    def close(self, *, flush: bool) -> float:
        """Write the last chunk (when ``flush``), stop the workers; the seconds it all took."""
        try:
            if flush and self.chunk:
                self._flush()
        finally:
            try:
                self.writer.close()
            finally:
                if self.encoder is not None:
                    self.encoder.close()
        return time.perf_counter() - self.t0

    def meta(self, seconds: float, **fields: Any) -> dict[str, Any]:
        return _video_meta(seconds, frames=self.done, chunks=self.chunks,
                           overlay=self.encoder is not None, prob_bits=self.prob_bits, **fields)


def _video_meta(seconds: float, *, frames: int, chunks: list[str], overlay: bool,
                prob_bits: int, **fields: Any) -> dict[str, Any]:
    """The ``video.json`` object: ``fields`` plus what was written and how fast."""
    return {**fields, "frames": frames, "chunks": chunks,
            "prob_scale": PROB_BITS[prob_bits][1], "seconds": round(seconds, 3),
            "frames_per_second": round(frames / max(seconds, 1e-9), 2),
            "overlay": "overlay.mp4" if overlay else None}


def predict_video(model: ProbabilityModel, path: str | os.PathLike[str],
                  out: str | os.PathLike[str], *, every: int = 1, max_frames: int | None = None,
                  batch_size: int = 8, overlay: bool = False, prob_bits: int = 8,
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
        prob_bits: Bits per stored probability: 8 (a step of 0.004) or 16 (1.5e-5).
        progress: Called with (frames done, running frames/s).

    Raises:
        ValueError: ``prob_bits`` is neither 8 nor 16.
    """
    _check_bits(prob_bits)
    src = Path(path)
    info = probe_video(src)
    dest = Path(out) / src.stem
    dest.mkdir(parents=True, exist_ok=True)
    frames = _threaded(iter_frames(src, every=every, max_frames=max_frames), 2 * batch_size)
    sink = _Sink(dest, fps=(info.fps or 16) / every, batch_size=batch_size, overlay=overlay,
                 prob_bits=prob_bits, progress=progress)
    ok = False
    try:
        for fr in segment_frames(model, frames, info, batch_size=batch_size):
            sink.put(fr)
        ok = True
    finally:
        seconds = sink.close(flush=ok)
    meta = sink.meta(seconds, source=str(src),
                     sampling={"every": every, "max_frames": max_frames},
                     classes=list(model.classes),
                     video={"frames": info.frames, "fps": info.fps, "width": info.width,
                            "height": info.height})
    atomic_write_text(dest / "video.json", json.dumps(meta, indent=1) + "\n")
    return meta


def predict_live(model: ProbabilityModel, source: str | os.PathLike[str],
                 out: str | os.PathLike[str], *, batch_size: int = 8, overlay: bool = False,
                 idle: float = 2.0, prob_bits: int = 8, progress: ProgressFn | None = None
                 ) -> dict[str, Any]:
    """Segment a live source (a growing file or a device) into ``out/<name>/`` as it arrives.

    Frames are taken as they come, up to ``batch_size`` at a time; when inference falls
    behind, the oldest waiting frames are dropped rather than queued (see
    :class:`~confseg.io.live.LiveFeed`), and ``video.json`` reports how many. Ctrl-C ends the
    feed cleanly: what was segmented is kept.

    Args:
        model: A Predictor, an Ensemble or a BundlePredictor.
        source: A growing video file (MPEG-TS, MKV, fragmented MP4) or a device path.
        out: Output folder.
        batch_size: Frames that may wait, and the largest batch.
        overlay: Also write ``overlay.mp4``.
        idle: A growing file ends after this many seconds without new bytes.
        prob_bits: Bits per stored probability: 8 or 16.
        progress: Called with (frames done, running frames/s).

    Raises:
        ValueError: ``prob_bits`` is neither 8 nor 16.
    """
    from confseg.io.live import LiveFeed

    _check_bits(prob_bits)
    feed = LiveFeed(source, keep=batch_size, idle=idle)
    dest = Path(out) / Path(source).stem
    sink: _Sink | None = None
    interrupted = False
    t0 = time.perf_counter()
    with feed:
        try:
            for batch in feed.batches():
                info = feed.info
                assert info is not None  # set before the first frame is handed over
                if sink is None:  # the folder appears with the first frame
                    dest.mkdir(parents=True, exist_ok=True)
                    sink = _Sink(dest, fps=info.fps, batch_size=batch_size, overlay=overlay,
                                 prob_bits=prob_bits, progress=progress)
                for fr in segment_frames(model, iter(batch), info, batch_size=len(batch)):
                    sink.put(fr)
        except KeyboardInterrupt:
            interrupted = True
    seconds = sink.close(flush=True) if sink is not None else time.perf_counter() - t0
    info = feed.info
    fields = {"source": str(source), "live": {"received": feed.received,
                                              "dropped": feed.dropped,
                                              "interrupted": interrupted,
                                              "idle_s": idle},
              "classes": list(model.classes),
              "video": None if info is None else {"fps": info.fps, "width": info.width,
                                                  "height": info.height}}
    meta = (sink.meta(seconds, **fields) if sink is not None else
            _video_meta(seconds, frames=0, chunks=[], overlay=False, prob_bits=prob_bits,
                        **fields))
    dest.mkdir(parents=True, exist_ok=True)
    atomic_write_text(dest / "video.json", json.dumps(meta, indent=1) + "\n")
    return meta


def _write_overlay(writer: VideoWriter, fr: SegmentedFrame) -> None:
    writer.write(overlay_confidence(fr.image, fr.prob))


def _chunk_name(chunk: list[SegmentedFrame]) -> str:
    return f"probs_{chunk[0].index:06d}.npz"


def _check_bits(prob_bits: int) -> None:
    if prob_bits not in PROB_BITS:
        raise ValueError(f"prob_bits={prob_bits!r}; store probabilities in 8 or 16 bits")


def quantise(prob: np.ndarray, prob_bits: int = 8) -> np.ndarray:
    """Probabilities as stored: ``round(clip(p, 0, 1) * scale)`` in ``prob_bits`` bits."""
    dtype, scale = PROB_BITS[prob_bits]
    buf = np.multiply(prob, np.float32(scale), dtype=np.float32)
    np.clip(buf, 0.0, scale, out=buf)
    return np.rint(buf, out=buf).astype(dtype)


def _write_chunk(dest: Path, chunk: list[SegmentedFrame], prob_bits: int = 8) -> str:
    name = _chunk_name(chunk)
    tmp = dest / f".{name}.tmp.npz"
    arrays = {"prob": quantise(np.stack([f.prob for f in chunk]), prob_bits),
              "index": np.array([f.index for f in chunk])}
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        for key, arr in arrays.items():
            with zf.open(f"{key}.npy", "w", force_zip64=True) as fh:
                np.lib.format.write_array(fh, arr, allow_pickle=False)
    os.replace(tmp, dest / name)
    return name


def read_probs(folder: str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray]:
    """A ``predict_video`` output folder's frames: ``(index (n,), prob (n, K, h, w) float32)``.

    Raises:
        MediaError: no ``video.json`` or a chunk it names is missing.
    """
    from confseg.errors import MediaError

    root = Path(folder)
    try:
        chunks = json.loads((root / "video.json").read_text())["chunks"]
        parts = []
        for c in chunks:
            with np.load(root / c) as z:
                parts.append({"index": z["index"], "prob": z["prob"]})
    except (OSError, KeyError, ValueError) as exc:
        raise MediaError(f"{root}: not a complete predict output ({type(exc).__name__}); "
                         "run confseg predict again") from None
    if not parts:
        return np.zeros(0, np.int64), np.zeros((0, 0, 0, 0), np.float32)
    index = np.concatenate([p["index"] for p in parts])
    stored = np.concatenate([p["prob"] for p in parts])
    scales = {np.dtype(dtype): scale for dtype, scale in PROB_BITS.values()}
    if stored.dtype not in scales:
        raise MediaError(f"{root}: probabilities stored as {stored.dtype}, not uint8/uint16; "
                         "run confseg predict again")
    prob = stored.astype(np.float32) / scales[stored.dtype]
    return index, prob
