"""Inference: load a run (or an ensemble of runs), predict probability maps."""

from confseg.errors import CheckpointError
from confseg.inference.ensemble import (
    TTA_MODES,
    Ensemble,
    ProbabilityModel,
    check_tta,
    load_predictor,
)
from confseg.inference.predictor import Predictor, load_checkpoint

__all__ = ["TTA_MODES", "CheckpointError", "Ensemble", "Predictor", "ProbabilityModel",
           "check_tta", "load_checkpoint", "load_predictor"]
