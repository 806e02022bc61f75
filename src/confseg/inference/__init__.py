"""Inference: load a run (or an ensemble of runs, or an exported bundle), predict probabilities.

Names load lazily, so ``import confseg.inference.bundle`` (the deployable, torch-free
predictor) does not import torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "TTA_MODES": "confseg.inference.ensemble",
    "Ensemble": "confseg.inference.ensemble",
    "ProbabilityModel": "confseg.inference.ensemble",
    "check_tta": "confseg.inference.ensemble",
    "load_predictor": "confseg.inference.ensemble",
    "Predictor": "confseg.inference.predictor",
    "load_checkpoint": "confseg.inference.predictor",
    "BundlePredictor": "confseg.inference.bundle",
    "predict_video": "confseg.inference.stream",
    "read_probs": "confseg.inference.stream",
    "CheckpointError": "confseg.errors",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'confseg.inference' has no attribute {name!r}")
