"""Downstream features for clinical models: frames, videos and patient-days (numpy / scipy)."""

from confseg.downstream.aggregate import (
    AGGREGATE_DOCS,
    VIDEO_STATS,
    patient_day_features,
    video_features,
)
from confseg.downstream.features import (
    FEATURE_DOCS,
    feature_doc,
    frame_features,
    raw_image_features,
    unit_image,
)

__all__ = [
    "AGGREGATE_DOCS",
    "FEATURE_DOCS",
    "VIDEO_STATS",
    "feature_doc",
    "frame_features",
    "patient_day_features",
    "raw_image_features",
    "unit_image",
    "video_features",
]
