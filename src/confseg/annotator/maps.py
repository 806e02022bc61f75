"""Confidence-map helpers of the annotator: PNG transport, version tokens, merge, pre-annotation."""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
from collections.abc import Iterable, Sequence

import numpy as np
from PIL import Image, UnidentifiedImageError

from confseg.errors import ImageTooLargeError, InvalidMapError, MediaError, PayloadTooLargeError
from confseg.io.images import open_pil
from confseg.preprocess import to_display


def encode_png(arr: np.ndarray) -> bytes:
    """PNG bytes of a uint8 ``(H, W)`` or ``(H, W, 3)`` array (lossless)."""
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(arr)).save(buf, format="PNG", compress_level=6)
    return buf.getvalue()


def encode_png_b64(arr: np.ndarray) -> str:
    """Base64 text of :func:`encode_png`."""
    return base64.b64encode(encode_png(arr)).decode("ascii")


def decode_map_png(data: bytes, *, what: str) -> np.ndarray:
    """Decode a confidence map sent as PNG into ``(H, W)`` uint8.

    Grey (L), RGB and RGBA PNGs are accepted when their colour channels are equal (what
    a browser canvas produces); the alpha channel must be opaque.

    Args:
        data: The PNG bytes.
        what: Names the map in error messages (e.g. "map for class 'a'").

    Raises:
        InvalidMapError: not a PNG, not grey, or not decodable.
    """
    if not data.startswith(b"\x89PNG\r\n\x1a\n"):
        raise InvalidMapError(f"{what}: not a PNG file; send the map as lossless PNG bytes")
    try:
        # the one pixel limit of confseg.io.images, checked on the header before decoding
        with open_pil(io.BytesIO(data), what) as im:
            im.load()
            mode = im.mode
            arr = np.asarray(im)
    except ImageTooLargeError as exc:
        raise PayloadTooLargeError(str(exc)) from None
    except MediaError as exc:
        raise InvalidMapError(str(exc)) from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError,
            Image.DecompressionBombError) as exc:
        raise InvalidMapError(f"{what}: cannot decode PNG ({exc}); re-encode it") from None
    if mode in ("L", "P") and arr.ndim == 2:
        if mode == "P":
            raise InvalidMapError(f"{what}: palette PNG; send a grey (mode L) PNG")
        return arr.astype(np.uint8, copy=False)
    if mode in ("RGB", "RGBA") and arr.ndim == 3:
        if mode == "RGBA" and not np.all(arr[..., 3] == 255):
            raise InvalidMapError(f"{what}: transparent pixels in the PNG; send opaque grey")
        rgb = arr[..., :3]
        if not (
            np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 0], rgb[..., 2])
        ):
            raise InvalidMapError(f"{what}: colour PNG; a map must be grey (R = G = B)")
        return np.ascontiguousarray(rgb[..., 0])
    raise InvalidMapError(f"{what}: PNG mode {mode!r} is not supported; send 8-bit grey")


def decode_map_b64(text: str, *, what: str) -> np.ndarray:
    """Decode a base64 PNG map (see :func:`decode_map_png`)."""
    if text.startswith("data:"):
        text = text.split(",", 1)[-1]
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidMapError(f"{what}: not valid base64; send base64-encoded PNG bytes") from None
    return decode_map_png(raw, what=what)


def map_version(arr: np.ndarray) -> str:
    """Version token of a map: a hash of its size and values."""
    a = np.ascontiguousarray(arr, dtype=np.uint8)
    h = hashlib.sha256(f"{a.shape[0]}x{a.shape[1]}:".encode())
    h.update(a.tobytes())
    return h.hexdigest()[:20]


def check_shape(arr: np.ndarray, shape: tuple[int, int], *, what: str) -> None:
    """Refuse a map whose size differs from the image's."""
    if arr.shape != shape:
        raise InvalidMapError(
            f"{what}: size {arr.shape[1]}x{arr.shape[0]} differs from the "
            f"image ({shape[1]}x{shape[0]}); send a map of the image's size"
        )


def check_levels(new: np.ndarray, base: np.ndarray, levels: Iterable[int], *, what: str) -> None:
    """Refuse painted values that are not a scale level or 0.

    Only pixels the client changed (``new != base``) are checked, so a stored map with
    other values (e.g. imported from another tool) can still be edited.
    """
    allowed = np.zeros(256, dtype=bool)
    allowed[0] = True
    allowed[list(levels)] = True
    changed = new != base
    bad = changed & ~allowed[new]
    if bad.any():
        y, x = (int(v) for v in np.argwhere(bad)[0])
        ok = sorted(int(v) for v in np.flatnonzero(allowed))
        raise InvalidMapError(
            f"{what}: value {int(new[y, x])} at x={x}, y={y} is not on the "
            f"confidence scale {ok[1:]} (or 0 = not marked)"
        )


def merge_maps(current: np.ndarray, base: np.ndarray, new: np.ndarray) -> np.ndarray:
    """Apply a client's changes on top of the server's current map.

    Pixels where ``new`` differs from ``base`` (what the client painted or erased since it
    loaded ``base``) take the client's value; every other pixel keeps the current value,
    so strokes saved meanwhile by another tab survive.
    """
    changed = new != base
    out = current.copy()
    out[changed] = new[changed]
    return out


def quantize_to_scale(prob: np.ndarray, levels: Sequence[int], minimum: float) -> np.ndarray:
    """Model probability -> nearest confidence level, as uint8 percent.

    Args:
        prob: Probabilities in [0, 1], any shape.
        levels: Scale values (percent).
        minimum: Percent below which a pixel is left unmarked (0).

    Returns:
        uint8 array of scale values or 0.
    """
    pct = np.clip(np.asarray(prob, dtype=np.float64), 0.0, 1.0) * 100.0
    lv = np.asarray(sorted(levels), dtype=np.float64)
    idx = np.abs(pct[..., None] - lv).argmin(axis=-1)
    out = lv[idx].astype(np.uint8)
    out[pct < minimum] = 0
    return out


def display_image(img: np.ndarray) -> np.ndarray:
    """An image as uint8 grey or RGB for the browser, at the contrast the model sees.

    The one display rule (:func:`confseg.preprocess.to_display`): uint8 as is, other
    integers divided by the image maximum, floats outside [0, 1] min-max scaled. So a
    clinician paints a 16-bit frame as the network is fed it, not at a separate window.
    """
    return to_display(img)
