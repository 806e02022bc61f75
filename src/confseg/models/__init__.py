"""Segmentation models: ``create_model(name, in_channels=..., classes=...)``, ``list_models()``."""

from confseg.errors import ModelError
from confseg.models.encoders import ResNetEncoder, load_encoder_weights
from confseg.models.fpn import FPN
from confseg.models.registry import ModelInfo, create_model, list_models, model_info
from confseg.models.unet import UNet

__all__ = [
    "FPN",
    "ModelError",
    "ModelInfo",
    "ResNetEncoder",
    "UNet",
    "create_model",
    "list_models",
    "load_encoder_weights",
    "model_info",
]
