"""Image and video readers/writers, and atomic file writes."""

from confseg.io.atomic import atomic_path, atomic_write_bytes, atomic_write_text
from confseg.io.images import (
    MAX_IMAGE_PIXELS,
    check_pixels,
    max_image_pixels,
    read_image,
    read_mask,
    read_percent_map,
    read_rater_map,
    write_png,
)

__all__ = [
    "MAX_IMAGE_PIXELS",
    "atomic_path",
    "atomic_write_bytes",
    "atomic_write_text",
    "check_pixels",
    "max_image_pixels",
    "read_image",
    "read_mask",
    "read_percent_map",
    "read_rater_map",
    "write_png",
]
