"""Metric kernels: arrays in, numbers out (segmentation, calibration, patient bootstrap)."""

from confseg.metrics.bootstrap import bootstrap_ci, summarize_with_ci
from confseg.metrics.segmentation import (
    HEADLINE,
    image_stats,
    metric_names,
    pooled_names,
    public_row,
    summarize,
)

__all__ = [
    "HEADLINE",
    "bootstrap_ci",
    "image_stats",
    "metric_names",
    "pooled_names",
    "public_row",
    "summarize",
    "summarize_with_ci",
]
