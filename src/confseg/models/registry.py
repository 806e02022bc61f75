"""Model registry: ``create_model(name, ...)`` and ``list_models()``."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

from torch import nn

from confseg.errors import ModelError
from confseg.models.encoders import RESNET_SPECS, load_encoder_weights
from confseg.models.fpn import FPN
from confseg.models.smp import SMP_PREFIX, create_smp_model, smp_model_names
from confseg.models.unet import UNet

__all__ = ["ModelError", "create_model", "list_models"]

_ARCHS: dict[str, Callable[..., nn.Module]] = {"fpn": FPN, "unet": UNet}
_BUILTIN = [f"{arch}-{enc}" for arch in _ARCHS for enc in RESNET_SPECS]


def list_models() -> list[str]:
    """Registered model names; ``smp-*`` names only when segmentation_models_pytorch imports."""
    return [*_BUILTIN, *smp_model_names()]


def create_model(
    name: str,
    *,
    in_channels: int,
    classes: int,
    encoder_weights: str | Path | None = None,
    **kw: Any,
) -> nn.Module:
    """Build a segmentation model returning raw logits ``(N, classes, H, W)`` at the input size.

    Outputs are multi-label logits (one sigmoid channel per class); the sigmoid is applied by the
    loss and at inference, not in the model. Weights are randomly initialised (seed torch for
    reproducibility); nothing is downloaded.

    Args:
        name: one of :func:`list_models`, e.g. ``fpn-resnet34`` or ``unet-resnet18``.
        in_channels: input image channels.
        classes: number of classes (output channels).
        encoder_weights: optional local ``.pt``/``.pth`` state_dict for the encoder (see
            :func:`~confseg.models.encoders.load_encoder_weights`; a first conv with another
            number of input channels is adapted: summed for 1 channel, else repeated and scaled).
        **kw: architecture options (FPN: ``pyramid_channels``, ``segmentation_channels``,
            ``dropout``; U-Net: ``decoder_channels``, ``dropout``; smp: ``smp.create_model``'s).

    Returns:
        The model, with ``model.confseg_spec = {"name", "in_channels", "classes"}`` set.

    Raises:
        ModelError: unknown name, smp missing, bad option, or a weights file that does not fit.
    """
    if in_channels < 1 or classes < 1:
        raise ModelError(
            f"model {name!r}: in_channels={in_channels} and classes={classes} must both be >= 1"
        )
    if name.startswith(SMP_PREFIX):
        model = create_smp_model(name, in_channels=in_channels, classes=classes, **kw)
    elif name in _BUILTIN:
        arch, _, encoder = name.partition("-")
        cls = _ARCHS[arch]
        options = set(inspect.signature(cls).parameters) - {"encoder", "in_channels", "classes"}
        unknown = sorted(set(kw) - options)
        if unknown:
            raise ModelError(
                f"model {name!r}: unknown option(s) {', '.join(unknown)}; "
                f"use {', '.join(sorted(options))}"
            )
        model = cls(encoder, in_channels=in_channels, classes=classes, **kw)
    else:
        known = ", ".join(list_models()) + ", smp-<arch>-<encoder> (needs smp)"
        raise ModelError(f"unknown model {name!r}; use one of: {known}")
    if encoder_weights is not None:
        load_encoder_weights(model.encoder, encoder_weights, model_name=name)
    model.confseg_spec = {"name": name, "in_channels": in_channels, "classes": classes}
    return model
