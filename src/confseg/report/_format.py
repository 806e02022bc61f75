"""Number and image formatting shared by the HTML reports."""

from __future__ import annotations

import base64
import math
from pathlib import Path
from typing import Any


def uri(png: bytes | None) -> str | None:
    """PNG bytes as a ``data:`` URI (None stays None)."""
    return "data:image/png;base64," + base64.b64encode(png).decode() if png else None


def file_uri(path: Path) -> str | None:
    """A PNG file as a ``data:`` URI, or None when it is missing."""
    return uri(path.read_bytes()) if path.is_file() else None


def finite(v: Any) -> bool:
    """Whether ``v`` is a finite number."""
    return isinstance(v, int | float) and math.isfinite(v)


def num(v: Any, *, signed: bool = False) -> str:
    """A number for a table: 3 decimals, 1 for large values, exponent for tiny ones; NaN "–"."""
    if not finite(v):
        return "–"
    sign = "+" if signed else ""
    a = abs(v)
    if a >= 100:
        return f"{v:{sign}.1f}"
    if a >= 1e-3 or a == 0:
        return f"{v:{sign}.3f}"
    return f"{v:{sign}.1e}"


def ci(m: dict[str, Any], *, signed: bool = False, missing: str = "") -> str:
    """``[lo, hi]`` of an interval dict (``missing`` when it has none)."""
    if not (finite(m.get("lo")) and finite(m.get("hi"))):
        return missing
    return f"[{num(m['lo'], signed=signed)}, {num(m['hi'], signed=signed)}]"
