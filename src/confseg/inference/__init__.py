"""Inference: load a run, predict probability maps."""

from confseg.inference.predictor import CheckpointError, Predictor, load_checkpoint

__all__ = ["CheckpointError", "Predictor", "load_checkpoint"]
