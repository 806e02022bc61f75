"""Training: configuration, data module, Lightning module and the run-folder runner."""

from confseg.training.config import ConfigError, TrainConfig
from confseg.training.runner import RunError, resume, train

__all__ = ["ConfigError", "RunError", "TrainConfig", "resume", "train"]
