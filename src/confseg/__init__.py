"""confseg: segmentation from uncertain labels (per-pixel confidence and multi-rater data)."""

from confseg.annotation import DEFAULT_SCALE, ClassSchema, ConfidenceLevel, Item
from confseg.dataset import Dataset, DatasetWriter, load_dataset
from confseg.errors import ConfsegError, DatasetError, StrategyError
from confseg.splits import Splits, make_splits, read_splits, write_splits
from confseg.targets import (
    IgnoreBand,
    RaterSample,
    Soft,
    Strategy,
    Threshold,
    Weighted,
    parse_strategy,
)

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_SCALE",
    "ClassSchema",
    "ConfidenceLevel",
    "ConfsegError",
    "Dataset",
    "DatasetError",
    "DatasetWriter",
    "IgnoreBand",
    "Item",
    "RaterSample",
    "Soft",
    "Splits",
    "Strategy",
    "StrategyError",
    "Threshold",
    "Weighted",
    "__version__",
    "load_dataset",
    "make_splits",
    "parse_strategy",
    "read_splits",
    "write_splits",
]
