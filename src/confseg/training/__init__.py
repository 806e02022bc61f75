"""Training (Lightning only): data module, Lightning module and the run-folder runner."""

from confseg.config import TrainConfig
from confseg.errors import ConfigError, RunError
from confseg.training.runner import build_trainer, is_rank_zero, resume, train

__all__ = ["ConfigError", "RunError", "TrainConfig", "build_trainer", "is_rank_zero", "resume",
           "train"]
