"""confseg: segmentation from uncertain labels (per-pixel confidence and multi-rater data)."""

from importlib.metadata import PackageNotFoundError, version

from confseg.data import (
    DEFAULT_SCALE,
    ClassSchema,
    ConfidenceLevel,
    Dataset,
    DatasetWriter,
    Item,
    Splits,
    load_dataset,
    make_splits,
    read_splits,
    write_splits,
)
from confseg.errors import ConfsegError, DatasetError, StrategyError
from confseg.targets import (
    IgnoreBand,
    RaterSample,
    Soft,
    Strategy,
    Threshold,
    Weighted,
    parse_strategy,
)

try:
    __version__ = version("confseg")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0+unknown"

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
