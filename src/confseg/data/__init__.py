"""The dataset folder and nothing else: data model, read/validate, write, splits, info."""

from confseg.data.dataset import DATASET_JSON, Dataset, load_dataset, validate_files
from confseg.data.schema import (
    DEFAULT_SCALE,
    ClassSchema,
    ConfidenceLevel,
    Item,
    percent_to_unit,
    rater_fraction,
    unit_to_percent,
)
from confseg.data.splits import Splits, check_splits, make_splits, read_splits, write_splits
from confseg.data.writer import DatasetWriter

__all__ = [
    "DATASET_JSON",
    "DEFAULT_SCALE",
    "ClassSchema",
    "ConfidenceLevel",
    "Dataset",
    "DatasetWriter",
    "Item",
    "Splits",
    "check_splits",
    "load_dataset",
    "make_splits",
    "percent_to_unit",
    "rater_fraction",
    "read_splits",
    "unit_to_percent",
    "validate_files",
    "write_splits",
]
