"""Lazy video reading: any container FFmpeg opens (MP4, AVI, MOV, MPEG-TS...) and DICOM cine.

Frames come one at a time as uint8 arrays, ``(H, W)`` grey or ``(H, W, 3)`` RGB, so memory
stays flat in the clip's length. Every reader checks the frame size against the one pixel
limit (:func:`confseg.io.images.check_pixels`) once, at open, before decoding.

Sampling rule (:func:`sample_indices`): take every ``every``-th frame (0, k, 2k, ...); if
that leaves more than ``max_frames``, spread ``max_frames`` evenly over that list, first and
last included. :func:`iter_frames` follows this rule whenever the file declares its frame
count; when it does not (MPEG-TS, some AVI), it yields the *first* ``max_frames`` of every
``every``-th frame.

A truncated file either stops cleanly (the frames decoded so far are all there is) or
raises a :class:`~confseg.errors.MediaError` saying how many frames decoded before the
failure; which one depends on where the cut falls and on the codec.

DICOM cine (pydicom, the ``medical`` extra): with pydicom >= 3 frames are decoded one by one
(``pydicom.pixels.iter_pixels``). With older pydicom the whole pixel array is decoded at
once, so the pixel limit then counts all frames together.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import numpy as np

from confseg.errors import MediaError
from confseg.io.images import check_pixels
from confseg.io.optional import require

DICOM_SUFFIXES = {".dcm", ".dicom"}
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # ITU-R BT.601, as FFmpeg's grey


@dataclass(frozen=True)
class VideoInfo:
    """What a video's header says, read without decoding frames.

    ``frames`` is the count the container declares (None when it does not say; a truncated
    file may decode fewer). ``channels`` is 1 for a grey pixel format, else 3.
    """

    path: str
    frames: int | None
    fps: float | None
    width: int
    height: int
    duration_s: float | None
    codec: str
    channels: int


# ----- sampling ------------------------------------------------------------------------------
def _check_sampling(every: int, max_frames: int | None) -> None:
    if int(every) < 1:
        raise ValueError(f"every={every} must be at least 1")
    if max_frames is not None and int(max_frames) < 0:
        raise ValueError(f"max_frames={max_frames} must be 0 or more (or None for all)")


def sample_indices(n_frames: int, *, every: int = 1, max_frames: int | None = None
                   ) -> list[int]:
    """The frame indices :func:`iter_frames` yields for a clip of ``n_frames`` frames.

    Every ``every``-th index (0, k, 2k, ...); if more than ``max_frames`` remain,
    ``max_frames`` of them spread evenly (rounded positions, first and last kept).

    Raises:
        ValueError: ``every < 1`` or ``max_frames < 0``.
    """
    _check_sampling(every, max_frames)
    base = list(range(0, max(0, int(n_frames)), int(every)))
    if max_frames is None or len(base) <= max_frames:
        return base
    m, last = int(max_frames), len(base) - 1
    if m <= 1:
        return base[:m]
    return [base[(2 * j * last + m - 1) // (2 * (m - 1))] for j in range(m)]


def _wanted(n: int | None, every: int, max_frames: int | None) -> list[int] | None:
    """Indices to keep, or None for "every k-th, to the end" (count unknown, no cap)."""
    if n is not None:
        return sample_indices(n, every=every, max_frames=max_frames)
    if max_frames is None:
        return None
    return list(range(0, every * max_frames, every))


# ----- shared helpers ------------------------------------------------------------------------
def _one_line(exc: BaseException) -> str:
    text = getattr(exc, "strerror", None) or str(exc)  # FFmpegError: no "[Errno ...]: path"
    return " ".join(str(text).split()) or type(exc).__name__


def _existing(path: str | os.PathLike[str]) -> Path:
    p = Path(path)
    if not p.is_file():
        raise MediaError(f"{p}: file not found; check the path")
    if p.stat().st_size == 0:
        raise MediaError(f"{p}: file is empty (0 bytes); re-copy or re-export the video")
    return p


def _is_dicom(p: Path) -> bool:
    if p.suffix.lower() in DICOM_SUFFIXES:
        return True
    with open(p, "rb") as fh:
        return fh.read(132)[128:132] == b"DICM"


def _no_frames(p: Path) -> MediaError:
    return MediaError(f"{p}: holds no decodable frame; re-export the video")


# ----- FFmpeg containers (PyAV) -------------------------------------------------------------
@contextlib.contextmanager
def _open_av(p: Path) -> Iterator[tuple[Any, Any]]:
    """Open ``p`` with PyAV; yield ``(container, first video stream)``."""
    try:
        container = av.open(str(p), metadata_errors="ignore")
    except (av.FFmpegError, OSError, UnicodeDecodeError) as exc:
        raise MediaError(
            f"{p}: not a video FFmpeg can open ({_one_line(exc)}); check the file is a "
            "complete MP4/AVI/MOV or DICOM, or re-export it"
        ) from None
    with container:
        if not container.streams.video:
            raise MediaError(f"{p}: has no video stream; pass a video file")
        stream = container.streams.video[0]
        w, h = stream.codec_context.width, stream.codec_context.height
        if w and h:
            check_pixels(h, w, p)
        yield container, stream


#: Limited-range luma (16-235) to full-range grey: what FFmpeg's swscale computes for
#: yuv -> gray, bit for bit (tests/test_video_io.py checks it), at a twentieth of the cost.
_LIMITED_TO_FULL = np.clip(np.round((np.arange(256) - 16) * 255 / 219), 0, 255).astype(np.uint8)
_PLANAR_YUV = ("yuv420p", "yuv422p", "yuv444p")


def _av_frame(frame: Any, grey: bool) -> np.ndarray:
    if grey and frame.format.name in _PLANAR_YUV and int(frame.color_range) in (0, 1):
        plane = frame.planes[0]  # luma, limited range (unspecified reads as limited)
        y = np.frombuffer(plane, np.uint8).reshape(frame.height, plane.line_size)
        return _LIMITED_TO_FULL[y[:, :frame.width]]
    return frame.to_ndarray(format="gray" if grey else "rgb24")


def _iter_av(p: Path, every: int, max_frames: int | None, grey: bool,
             indices: Sequence[int] | None = None) -> Iterator[tuple[int, np.ndarray]]:
    with _open_av(p) as (container, stream):
        if indices is None:
            indices = _wanted(stream.frames or None, every, max_frames)
        keep = None if indices is None else set(indices)
        last = None if indices is None else max(indices, default=-1)
        if last == -1:
            return
        n, sized = 0, bool(stream.codec_context.width and stream.codec_context.height)
        try:
            for frame in container.decode(stream):
                if not sized:  # the header had no size: check the first frame's
                    check_pixels(frame.height, frame.width, p)
                    sized = True
                if (n % every == 0) if keep is None else (n in keep):
                    yield n, _av_frame(frame, grey)
                n += 1
                if last is not None and n > last:
                    return
        except (av.FFmpegError, OSError) as exc:
            raise MediaError(
                f"{p}: decoding failed after {n} frame{'s' * (n != 1)} ({_one_line(exc)}); "
                "the file is probably truncated or damaged: re-copy or re-export it"
            ) from None
        if n == 0:
            raise _no_frames(p)


def _probe_av(p: Path) -> VideoInfo:
    with _open_av(p) as (container, stream):
        cc = stream.codec_context
        w, h = int(cc.width or 0), int(cc.height or 0)
        if not (w and h):  # a header without a frame size: look at the first frame
            try:
                frame = next(iter(container.decode(stream)), None)
            except (av.FFmpegError, OSError):
                frame = None
            if frame is None:
                raise _no_frames(p)
            w, h = int(frame.width), int(frame.height)
            check_pixels(h, w, p)
        rate = stream.average_rate or stream.guessed_rate
        if container.duration:
            duration: float | None = container.duration / av.time_base
        elif stream.duration and stream.time_base:
            duration = float(stream.duration * stream.time_base)
        else:
            duration = None
        pix = cc.pix_fmt or ""
        return VideoInfo(
            path=str(p), frames=int(stream.frames) or None,
            fps=float(rate) if rate else None, width=w, height=h, duration_s=duration,
            codec=str(cc.name), channels=1 if pix.startswith(("gray", "ya", "mono")) else 3,
        )


# ----- DICOM cine (pydicom) -----------------------------------------------------------------
def _pydicom(p: Path) -> Any:
    return require("pydicom", "medical", purpose=f"{p}: reading DICOM cine")


def _dicom_header(p: Path) -> tuple[Any, int]:
    """The dataset without pixel data, and its frame count; the pixel limit checked."""
    pydicom = _pydicom(p)
    try:
        ds = pydicom.dcmread(str(p), stop_before_pixels=True)
        rows, cols = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
        n = int(ds.get("NumberOfFrames", 1) or 0)
    except Exception as exc:  # pydicom raises InvalidDicomError, ValueError, KeyError...
        raise MediaError(f"{p}: cannot read DICOM ({_one_line(exc)}); re-export it") from None
    if not (rows and cols):
        raise MediaError(f"{p}: DICOM has no Rows/Columns; it holds no image, pass a cine")
    if n < 1:
        raise _no_frames(p)
    return ds, n


def _dicom_fps(ds: Any) -> float | None:
    for key, to_fps in (("FrameTime", lambda v: 1000.0 / v), ("CineRate", float),
                        ("RecommendedDisplayFrameRate", float)):
        with contextlib.suppress(TypeError, ValueError, ZeroDivisionError):
            value = float(ds.get(key) or 0)
            if value > 0:
                return float(to_fps(value))
    return None


def _probe_dicom(p: Path) -> VideoInfo:
    ds, n = _dicom_header(p)
    fps = _dicom_fps(ds)
    rows, cols = int(ds.Rows), int(ds.Columns)
    check_pixels(rows, cols, p)
    ts = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    return VideoInfo(
        path=str(p), frames=n, fps=fps, width=cols, height=rows,
        duration_s=n / fps if fps else None,
        codec=f"dicom:{ts.name}" if ts is not None else "dicom",
        channels=int(ds.get("SamplesPerPixel", 1) or 1),
    )


def _dicom_to_uint8(arr: np.ndarray, ds: Any, photometric: str, grey: bool) -> np.ndarray:
    """One decoded frame as uint8 grey or RGB: scaled by BitsStored, MONOCHROME1 inverted."""
    bits = int(ds.get("BitsStored", 0) or ds.get("BitsAllocated", 8) or 8)
    if arr.dtype != np.uint8 or bits > 8:
        a = arr.astype(np.float32)
        if int(ds.get("PixelRepresentation", 0) or 0) == 1:
            a += 2.0 ** (bits - 1)
        arr = np.clip(np.rint(a * (255.0 / (2.0**bits - 1))), 0, 255).astype(np.uint8)
    if photometric == "MONOCHROME1":
        arr = 255 - arr
    if arr.ndim == 3:
        arr = arr[..., :3]
        if grey:
            arr = np.clip(np.rint(arr.astype(np.float32) @ _LUMA), 0, 255).astype(np.uint8)
    elif not grey:
        arr = np.repeat(arr[..., None], 3, axis=2)
    return np.ascontiguousarray(arr)


def _dicom_frames(p: Path, ds: Any, n: int, wanted: list[int]) -> Iterator[np.ndarray]:
    """The decoded frames at ``wanted`` (sorted, unique, < n), one at a time."""
    pydicom = _pydicom(p)
    iter_pixels = getattr(getattr(pydicom, "pixels", None), "iter_pixels", None)
    if iter_pixels is not None:  # pydicom >= 3: decodes frame by frame
        check_pixels(int(ds.Rows), int(ds.Columns), p)
        yield from iter_pixels(str(p), indices=wanted)
        return
    check_pixels(int(ds.Rows), int(ds.Columns), p, frames=n)  # decodes all frames at once
    full = pydicom.dcmread(str(p))
    arr = full.pixel_array
    if str(full.get("PhotometricInterpretation", "")).startswith("YBR"):
        util = require("pydicom.pixel_data_handlers.util", "medical",  # pydicom < 3
                       purpose=f"{p}: reading DICOM cine")
        arr = util.convert_color_space(arr, full.PhotometricInterpretation, "RGB")
    if n == 1:  # pydicom 2: (R, C[, S]) for one frame, (N, R, C[, S]) for several
        arr = arr[None]
    for i in wanted:
        yield arr[i]


def _iter_dicom(p: Path, every: int, max_frames: int | None, grey: bool,
                indices: Sequence[int] | None = None) -> Iterator[tuple[int, np.ndarray]]:
    ds, n = _dicom_header(p)
    wanted = sorted({i for i in indices if i < n}) if indices is not None else (
        sample_indices(n, every=every, max_frames=max_frames))
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).strip().upper()
    if photometric == "PALETTE COLOR":
        raise MediaError(f"{p}: PALETTE COLOR DICOM is not supported; export it as RGB")
    if photometric.startswith("YBR"):
        photometric = "RGB"  # pydicom converts YBR to RGB
    done = 0
    try:
        for i, arr in zip(wanted, _dicom_frames(p, ds, n, wanted), strict=False):
            yield i, _dicom_to_uint8(np.asarray(arr), ds, photometric, grey)
            done += 1
    except MediaError:
        raise
    except Exception as exc:  # pydicom raises ValueError, AttributeError, NotImplementedError...
        raise MediaError(
            f"{p}: decoding DICOM failed after {done} frame{'s' * (done != 1)} "
            f"({_one_line(exc)}); the file may be truncated (re-copy or re-export it) or "
            "need a pixel-data plugin (install pylibjpeg or gdcm)"
        ) from None


# ----- public API ----------------------------------------------------------------------------
def probe_video(path: str | os.PathLike[str]) -> VideoInfo:
    """Read a video's frame count, rate, size and codec from its header, decoding nothing.

    (A container whose header lacks the frame size has its first frame decoded.)

    Raises:
        MediaError: missing, empty, not a video, no video stream, no frame, or frames above
            the pixel limit.
    """
    p = _existing(path)
    return _probe_dicom(p) if _is_dicom(p) else _probe_av(p)


#: File suffixes read as video (FFmpeg containers); a DICOM is a video when it has frames.
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".m4v", ".ts", ".webm")


def is_video(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is read as a video: a container suffix, or a multi-frame DICOM.

    Raises:
        MediaError: a DICOM whose header cannot be read.
    """
    p = Path(path)
    if p.suffix.lower() in VIDEO_SUFFIXES:
        return True
    if not p.is_file() or p.stat().st_size == 0 or not _is_dicom(p):
        return False
    return _dicom_header(p)[1] > 1


def iter_frames(path: str | os.PathLike[str], *, every: int = 1, max_frames: int | None = None,
                grey: bool = True) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(frame_index, frame)`` lazily, one decoded frame at a time.

    Args:
        path: A video FFmpeg opens, or a DICOM (cine) file.
        every: Keep every ``every``-th frame (0, k, 2k, ...).
        max_frames: At most this many frames: spread evenly when the file declares its
            frame count (as :func:`sample_indices`), else the first ones.
        grey: ``(H, W)`` uint8 frames if True, else ``(H, W, 3)`` RGB uint8.

    Raises:
        MediaError: as :func:`probe_video`, or decoding fails part way (the message says
            after how many frames). A file that simply ends early stops the iteration.
        ValueError: ``every < 1`` or ``max_frames < 0``.
    """
    _check_sampling(every, max_frames)
    p = _existing(path)
    reader = _iter_dicom if _is_dicom(p) else _iter_av
    yield from reader(p, int(every), None if max_frames is None else int(max_frames), grey)


def read_frames(path: str | os.PathLike[str], indices: Iterable[int], *, grey: bool = True
                ) -> list[np.ndarray]:
    """The frames at ``indices`` (in that order, repeats allowed), decoded sequentially.

    Decoding stops at the largest index wanted; only the wanted frames are kept.

    Raises:
        MediaError: as :func:`iter_frames`, or an index past the last frame.
        ValueError: a negative index.
    """
    wanted = [int(i) for i in indices]
    if any(i < 0 for i in wanted):
        raise ValueError(f"frame indices must be 0 or more, got {min(wanted)}")
    p = _existing(path)
    if not wanted:
        return []
    reader = _iter_dicom if _is_dicom(p) else _iter_av
    got = dict(reader(p, 1, None, grey, sorted(set(wanted))))
    missing = [i for i in wanted if i not in got]
    if missing:
        raise MediaError(
            f"{p}: has no frame {missing[0]} (the video ends before it); ask for a lower index"
        )
    return [got[i] for i in wanted]
