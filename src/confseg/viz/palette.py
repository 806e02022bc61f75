"""The one class palette: class ``i`` has the same colour in reports, overlays and the annotator."""

from __future__ import annotations

from collections.abc import Sequence

#: RGB (0..255) per class index, cycled when a dataset has more classes.
PALETTE: tuple[tuple[int, int, int], ...] = (
    (255, 200, 0),    # amber
    (0, 190, 255),    # sky blue
    (255, 60, 170),   # magenta
    (90, 230, 90),    # green
    (170, 120, 255),  # violet
    (255, 120, 40),   # orange
)


def class_colours(n: int, colours: Sequence[Sequence[int]] | None = None
                  ) -> list[tuple[int, int, int]]:
    """``n`` RGB colours: ``colours`` if given, else :data:`PALETTE` (either cycled)."""
    pal = list(colours) if colours is not None else list(PALETTE)
    if not pal:
        raise ValueError("colors must not be empty")
    return [tuple(int(c) for c in pal[i % len(pal)][:3]) for i in range(n)]  # type: ignore[misc]


def hex_colour(i: int) -> str:
    """Class ``i``'s palette colour as ``#rrggbb`` (what the browser's canvas takes)."""
    r, g, b = PALETTE[i % len(PALETTE)]
    return f"#{r:02x}{g:02x}{b:02x}"
