"""Inference: load a run, predict probability maps."""

from confseg.errors import CheckpointError
from confseg.inference.predictor import Predictor, load_checkpoint

__all__ = ["CheckpointError", "Predictor", "load_checkpoint"]
