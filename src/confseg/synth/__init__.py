"""The synthetic lung-ultrasound generator: B-mode images, simulated readers, clinical data."""

from confseg.synth.annotator import AnnotatorModel, RaterModel, rater_models
from confseg.synth.generate import generate
from confseg.synth.structures import CLASSES

__all__ = ["CLASSES", "AnnotatorModel", "RaterModel", "generate", "rater_models"]
