"""Image readers and writers: PNG, JPEG, NIfTI (2D) and DICOM, decoded for real.

Every reader checks the image's size from the file header *before* decoding it: an image
above :func:`max_image_pixels` pixels (default :data:`MAX_IMAGE_PIXELS`, 50 million;
override with the environment variable ``CONFSEG_MAX_IMAGE_PIXELS``) is refused with a
:class:`~confseg.errors.MediaError`, so a small file that claims a huge size (a
"decompression bomb") never allocates memory. The same check
(:func:`check_pixels`) guards arrays whose size comes from an annotation export. PIL's own
bomb guard is subsumed by this one limit (it neither warns nor raises on its own).
"""

from __future__ import annotations

import contextlib
import os
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import numpy as np
from PIL import Image, UnidentifiedImageError

from confseg.errors import ConfsegError, ImageTooLargeError, MediaError
from confseg.io.atomic import atomic_path
from confseg.io.optional import require

PIL_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"}

MAX_IMAGE_PIXELS = 50_000_000
"""Default limit on an image's pixel count (height x width); see :func:`max_image_pixels`."""

MAX_PIXELS_ENV = "CONFSEG_MAX_IMAGE_PIXELS"
"""Environment variable that overrides :data:`MAX_IMAGE_PIXELS` (a positive integer)."""

_PIL_LOCK = threading.Lock()  # PIL's bomb limit is a module global: swap it under a lock


def max_image_pixels() -> int:
    """The largest image (in pixels) any reader decodes or any importer allocates.

    ``CONFSEG_MAX_IMAGE_PIXELS`` (e.g. ``200000000`` or ``200_000_000``) when set, else
    :data:`MAX_IMAGE_PIXELS`. Read on every call, so a change takes effect at once.

    Raises:
        ConfsegError: the variable is set but not a positive integer.
    """
    raw = os.environ.get(MAX_PIXELS_ENV, "").strip()
    if not raw:
        return MAX_IMAGE_PIXELS
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value <= 0:
        raise ConfsegError(
            f"{MAX_PIXELS_ENV}={raw!r} is not a positive integer; set it to a pixel count "
            f"such as {MAX_IMAGE_PIXELS} or unset it"
        )
    return value


def _mpixel(n: int) -> str:
    if n < 1_000_000:
        return f"{n} pixels"
    m = n / 1e6
    return f"{m:,.0f} Mpixel" if m >= 100 else f"{m:.3g} Mpixel"


def check_pixels(h: int, w: int, where: object, *, frames: int = 1) -> None:
    """Refuse an image (or an array to allocate) of ``h x w`` (x ``frames``) above the limit.

    Args:
        h: Height in pixels.
        w: Width in pixels.
        where: Names the file or entry in the message (a path or a text).
        frames: Frames decoded together (a multi-frame DICOM decodes all of them).

    Raises:
        ImageTooLargeError: (a MediaError) more pixels than :func:`max_image_pixels`, in
            one line that names ``where`` and says what to do.
    """
    limit = max_image_pixels()
    n = int(h) * int(w) * max(1, int(frames))
    if n > limit:
        size = f"{int(w)}x{int(h)}" + (f"x{int(frames)} frames" if frames > 1 else "")
        raise ImageTooLargeError(
            f"{where}: image is {size} = {_mpixel(n)}, above the limit of {_mpixel(limit)} "
            f"({MAX_PIXELS_ENV}); downsample it or raise the limit"
        )


@contextlib.contextmanager
def open_pil(source: str | os.PathLike[str] | IO[bytes], where: object) -> Iterator[Image.Image]:
    """Open an image with PIL, header only, and refuse it if it is above the pixel limit.

    PIL's own decompression-bomb guard (a warning, then an error at twice its own limit)
    is off while the header is parsed: :func:`check_pixels` is the one limit, and it names
    the image's size. Decoding (``im.load()``) happens only after the check passed.

    Args:
        source: A path or a binary file object.
        where: Names the image in error messages.

    Yields:
        The open (not yet decoded) image.

    Raises:
        MediaError: not an image PIL can identify (ImageTooLargeError: above the limit).
    """
    try:
        with _PIL_LOCK:
            saved = Image.MAX_IMAGE_PIXELS
            Image.MAX_IMAGE_PIXELS = None
            try:
                im = Image.open(source)
            finally:
                Image.MAX_IMAGE_PIXELS = saved
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise _undecodable(where, exc) from None
    with im:
        check_pixels(im.height, im.width, where)
        yield im


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


def _undecodable(where: object, exc: BaseException) -> MediaError:
    return MediaError(f"{where}: cannot decode image ({_one_line(exc)}); re-export the file")


def _suffix(path: Path) -> str:
    name = path.name.lower()
    return ".nii.gz" if name.endswith(".nii.gz") else path.suffix.lower()


def _check_finite(arr: np.ndarray, p: Path) -> np.ndarray:
    if arr.dtype.kind in "fc" and not np.isfinite(arr).all():
        raise MediaError(f"{p}: holds NaN or infinite values; fix the export")
    return arr


def read_image(path: str | os.PathLike[str]) -> np.ndarray:
    """Read a 2D image as a numpy array.

    Args:
        path: PNG/JPEG/BMP/TIFF, NIfTI (``.nii``/``.nii.gz``, 2D or a single slice)
            or DICOM (``.dcm``).

    Returns:
        ``(H, W)`` for grayscale or ``(H, W, C)`` for colour, in the file's dtype.

    Raises:
        MediaError: the file is missing, of an unknown type, above the pixel limit
            (:func:`max_image_pixels`, checked before decoding), a float image holding
            NaN or infinite values, or cannot be decoded.
    """
    p = Path(path)
    if not p.is_file():
        raise MediaError(f"{p}: file not found; check the path")
    suffix = _suffix(p)
    if suffix in PIL_SUFFIXES:
        return _check_finite(_read_pil(p)[0], p)
    try:
        if suffix in (".nii", ".nii.gz"):
            return _check_finite(_read_nifti(p), p)
        if suffix == ".dcm":
            return _check_finite(_read_dicom(p), p)
    except MediaError:
        raise
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        raise _undecodable(p, exc) from exc
    raise MediaError(f"{p}: unsupported image type {suffix!r}; use PNG, JPEG, NIfTI or DICOM")


def _read_pil(p: Path) -> tuple[np.ndarray, str | None]:
    """Decode a PIL-readable image after the header check; also return PIL's format name."""
    with open_pil(p, p) as im:
        fmt = im.format
        try:
            pil_limit = Image.MAX_IMAGE_PIXELS
            if pil_limit is not None and im.width * im.height > pil_limit:
                # a limit raised above PIL's own: keep PIL's later checks quiet
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                    im.load()
            else:
                im.load()
            if im.mode in ("P", "LA", "PA", "RGBA"):
                im = im.convert("RGB" if im.mode != "LA" else "L")
            if im.mode == "I;16":
                return np.asarray(im, dtype=np.uint16), fmt
            return np.asarray(im), fmt
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError,
                Image.DecompressionBombError) as exc:
            raise _undecodable(p, exc) from None


def image_shape(path: str | os.PathLike[str]) -> tuple[int, int]:
    """``(H, W)`` of an image, from the file header where the format allows (no decoding).

    Raises:
        MediaError: the file is missing, not a readable image, or above the pixel limit.
    """
    p = Path(path)
    if _suffix(p) in PIL_SUFFIXES and p.is_file():
        with open_pil(p, p) as im:
            return im.height, im.width
    return tuple(read_image(p).shape[:2])  # type: ignore[return-value]


def _read_nifti(p: Path) -> np.ndarray:
    nib = require("nibabel", "medical", purpose=f"{p}: reading NIfTI")
    try:
        img = nib.load(str(p))
        shape = tuple(int(n) for n in img.shape if n != 1)  # from the header, nothing decoded
        if len(shape) != 2:
            raise MediaError(
                f"{p}: NIfTI must be 2D (got shape {tuple(img.shape)}); export one slice"
            )
        check_pixels(shape[1], shape[0], p)  # NIfTI stores (x, y)
        arr = np.squeeze(np.asarray(img.dataobj))
    except MediaError:
        raise
    except Exception as exc:  # nibabel raises its own ImageFileError and others
        raise _undecodable(p, exc) from None
    # NIfTI stores (x, y); images are (rows, cols).
    return np.ascontiguousarray(arr.T)


def _read_dicom(p: Path) -> np.ndarray:
    pydicom = require("pydicom", "medical", purpose=f"{p}: reading DICOM")
    try:
        ds = pydicom.dcmread(str(p))
        rows, cols = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
        frames = int(ds.get("NumberOfFrames", 1) or 1)
        check_pixels(rows, cols, p, frames=frames)  # header only: pixel data not decoded yet
        arr = ds.pixel_array
    except MediaError:
        raise
    except Exception as exc:
        raise MediaError(f"{p}: cannot decode DICOM ({_one_line(exc)})") from exc
    if arr.ndim == 3 and arr.shape[-1] not in (3, 4):
        arr = arr[0]
    return np.asarray(arr)


def read_mask(path: str | os.PathLike[str], threshold: int = 127) -> np.ndarray:
    """Read a binary mask (PNG or lossy JPEG) as bool, thresholding grey values.

    Args:
        path: Mask file; colour masks are reduced to their maximum channel.
        threshold: Values strictly above it are foreground (127 suits 0/255 JPEG masks;
            use 0 for 0/1 PNG masks).
    """
    return to_grey_max(read_image(path)) > threshold


def to_grey_max(arr: np.ndarray) -> np.ndarray:
    """Reduce ``(H, W, C)`` to ``(H, W)`` by the channel maximum (``(H, W)`` passes through).

    A channel-by-channel ``np.maximum`` is ~10x faster than ``max(axis=-1)`` on the strided
    last axis of large RGB frames.
    """
    if arr.ndim != 3:
        return arr
    out = arr[..., 0].copy()
    for c in range(1, arr.shape[-1]):
        np.maximum(out, arr[..., c], out=out)
    return out


def read_rater_map(path: str | os.PathLike[str]) -> np.ndarray:
    """Read a rater's map, binary or percent, as uint8 percent (0..100).

    The one rule for "is this a 0/1, a 0/255 or a percent map?": colour is reduced to its
    channel maximum; a maximum above 100 means a 0/255 mask (values above 127 -> 100); a
    maximum of at most 1 means a 0/1 mask (-> 0/100); anything else is already percent.

    Returns:
        ``(H, W)`` uint8 array.

    Raises:
        MediaError: the file cannot be read.
    """
    arr = to_grey_max(read_image(path))
    top = int(arr.max(initial=0))
    if top > 100:  # 0/255 binary mask (possibly lossy)
        return (arr > 127).astype(np.uint8) * np.uint8(100)
    if top <= 1:  # 0/1 binary mask
        return (arr > 0).astype(np.uint8) * np.uint8(100)
    return arr.astype(np.uint8)


def read_percent_map(path: str | os.PathLike[str]) -> np.ndarray:
    """Read a confidence map stored as uint8 percent (0..100) in a lossless PNG.

    Returns:
        ``(H, W)`` uint8 array.

    Raises:
        MediaError: not a PNG (by name or by content: JPEG data named ``.png`` is refused),
            not single-channel, or values above 100.
    """
    p = Path(path)
    if _suffix(p) != ".png":
        raise MediaError(
            f"{p}: confidence maps must be lossless PNG (JPEG ruins levels); re-save as PNG"
        )
    if not p.is_file():
        raise MediaError(f"{p}: file not found; check the path")
    arr, fmt = _read_pil(p)
    if fmt != "PNG":
        raise MediaError(
            f"{p}: is {fmt or 'non-PNG'} data named .png; confidence maps must be lossless "
            "PNG: re-export as PNG"
        )
    if arr.ndim == 3:
        if not (np.all(arr[..., 0] == arr[..., 1]) and np.all(arr[..., 0] == arr[..., 2])):
            raise MediaError(f"{p}: confidence map must be single-channel grey; re-save as mode L")
        arr = arr[..., 0]
    if arr.dtype != np.uint8:
        if arr.max(initial=0) > 100:
            raise MediaError(f"{p}: confidence value {int(arr.max())} > 100; values are percent")
        arr = arr.astype(np.uint8)
    top = int(arr.max(initial=0))
    if top > 100:
        raise MediaError(
            f"{p}: confidence value {top} > 100; maps hold percent 0..100 (0 = not marked)"
        )
    return arr


def write_png(path: str | os.PathLike[str], arr: np.ndarray) -> None:
    """Write a uint8/uint16/bool array (``(H, W)`` or ``(H, W, 3)``) to PNG atomically."""
    a = np.asarray(arr)
    if a.dtype == bool:
        a = a.astype(np.uint8) * 255
    if a.dtype not in (np.uint8, np.uint16):
        raise MediaError(f"{path}: cannot write dtype {a.dtype} as PNG; convert to uint8/uint16")
    if a.dtype == np.uint16 and a.ndim != 2:
        raise MediaError(f"{path}: 16-bit PNG must be single-channel")
    im = Image.fromarray(a)
    with atomic_path(path, suffix=".png") as tmp:
        im.save(tmp, format="PNG")
