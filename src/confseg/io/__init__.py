"""Image and video readers/writers, and atomic file writes."""

from confseg.io.atomic import atomic_path, atomic_write_bytes, atomic_write_text
from confseg.io.images import (
    read_image,
    read_mask,
    read_percent_map,
    read_rater_map,
    write_png,
)

__all__ = [
    "atomic_path",
    "atomic_write_bytes",
    "atomic_write_text",
    "read_image",
    "read_mask",
    "read_percent_map",
    "read_rater_map",
    "write_png",
]
