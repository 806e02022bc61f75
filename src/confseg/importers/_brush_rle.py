"""Label Studio's brush RLE (a port of label-studio-converter ``brush.decode_rle``)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


class _BitStream:
    """Reads big-endian unsigned integers of any bit width from a byte list."""

    def __init__(self, data: Sequence[int]) -> None:
        if isinstance(data, str | bytes | dict):
            raise ValueError("RLE must be a list of integers 0..255")
        try:
            raw = np.asarray(data)
        except (ValueError, TypeError, OverflowError):
            raise ValueError("RLE must be a list of integers 0..255") from None
        if raw.ndim != 1 or (raw.size and raw.dtype.kind not in "iu"):
            raise ValueError("RLE must be a list of integers 0..255")
        if raw.size and (raw.min() < 0 or raw.max() > 255):
            raise ValueError("RLE bytes must lie in 0..255")
        bits = np.unpackbits(raw.astype(np.uint8))
        self.bits = (bits + ord("0")).tobytes().decode("ascii")
        self.i = 0

    def read(self, size: int) -> int:
        if self.i + size > len(self.bits):
            raise ValueError("RLE stream ends early")
        out = int(self.bits[self.i : self.i + size], 2)
        self.i += size
        return out


def decode_brush_rle(rle: Sequence[int], expected: int | None = None) -> np.ndarray:
    """Decode Label Studio's brush RLE to the flat array it encodes (RGBA, row-major).

    The stream (rle-pack by thi.ng): 32 bits value count, 5 bits word size - 1, four
    4-bit run-length widths - 1; then blocks of: 1 bit run flag, 2 bits index into the
    widths, that many bits of length - 1, then one word repeated (run) or that many
    words (literals).

    Args:
        rle: The stream's bytes.
        expected: The number of values the stream must hold (``H * W * 4``); checked on
            the stream's header, before anything is allocated.

    Raises:
        ValueError: the stream is malformed or holds another number of values.
    """
    inp = _BitStream(rle)
    num = inp.read(32)
    if expected is not None and num != expected:
        raise ValueError(f"brush RLE holds {num} values, the image needs {expected}")
    word_size = inp.read(5) + 1
    rle_sizes = [inp.read(4) + 1 for _ in range(4)]
    dtype = np.uint8 if word_size < 9 else np.uint16 if word_size < 17 else np.uint32
    out = np.zeros(num, dtype=dtype)
    i = 0
    while i < num:
        x = inp.read(1)
        j = i + 1 + inp.read(rle_sizes[inp.read(2)])
        if x:
            out[i:j] = inp.read(word_size)
            i = j
        else:
            if j > num:
                raise ValueError(f"literal block runs past the {num} values")
            while i < j:
                out[i] = inp.read(word_size)
                i += 1
    return out
