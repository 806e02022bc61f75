"""Model registry: ``create_model(name, ...)``, ``list_models()`` and ``model_info(name)``."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from torch import nn

from confseg.errors import ModelError
from confseg.models.encoders import ENCODER_STRIDE, RESNET_SPECS, load_encoder_weights
from confseg.models.fpn import FPN
from confseg.models.monai_nets import (
    EFFICIENTNET_BACKBONES,
    AttentionUNet2D,
    BasicUNet2D,
    DynUNet2D,
    FlexUNet,
    SegResNet2D,
)
from confseg.models.smp import SMP_PREFIX, create_smp_model, smp_model_names
from confseg.models.unet import UNet

__all__ = ["ModelError", "ModelInfo", "create_model", "list_models", "model_info"]


@dataclass(frozen=True)
class ModelInfo:
    """What a registered model can do (checked for every listed name by tests/test_models.py).

    Attributes:
        name: the registered name.
        summary: one line on what the network is.
        torchscript: ``"script"`` when ``torch.jit.script`` compiles it (size-generic), else
            ``"trace"`` (``torch.jit.trace`` only).
        onnx: whether the TorchScript-based ONNX exporter (opset 17, dynamic N/H/W) works.
        encoder_weights: whether ``create_model(..., encoder_weights=...)`` applies (the model
            has a separate ``model.encoder``).
    """

    name: str
    summary: str
    torchscript: Literal["script", "trace"] = "script"
    onnx: bool = True
    encoder_weights: bool = False


_ARCHS: dict[str, Callable[..., nn.Module]] = {"fpn": FPN, "unet": UNet}
_BUILTIN = [f"{arch}-{enc}" for arch in _ARCHS for enc in RESNET_SPECS]
_SUMMARY = {"fpn": "Semantic FPN (Kirillov 2019) on a {enc} encoder; stride-4 head upsampled x4",
            "unet": "U-Net: MONAI FlexibleUNet decoder on a {enc} encoder (torchvision layout)"}

#: MONAI networks without a separate encoder: name -> class.
_MONAI: dict[str, Callable[..., nn.Module]] = {
    "basicunet": BasicUNet2D,
    "dynunet": DynUNet2D,
    "segresnet": SegResNet2D,
    "attention-unet": AttentionUNet2D,
}
FLEXUNET_PREFIX = "flexunet-"
#: The FlexibleUNet backbones listed by ``list_models``; every ``EFFICIENTNET_BACKBONES`` name
#: is accepted by ``create_model``.
_FLEX_LISTED = ("efficientnet-b0", "efficientnet-b2")

_INFO: dict[str, ModelInfo] = {
    **{n: ModelInfo(n, _SUMMARY[n.partition("-")[0]].format(enc=n.partition("-")[2]),
                    encoder_weights=True) for n in _BUILTIN},
    "basicunet": ModelInfo("basicunet", "MONAI BasicUNet: 4-level U-Net, instance norm, "
                           "deconv upsampling"),
    "dynunet": ModelInfo("dynunet", "MONAI DynUNet: nnU-Net's U-Net, topology planned from "
                         "`size` (<= 6 stages)"),
    "segresnet": ModelInfo("segresnet", "MONAI SegResNet: residual encoder-decoder, group norm "
                           "(Myronenko 2018)"),
    "attention-unet": ModelInfo("attention-unet", "MONAI AttentionUnet: U-Net with attention-"
                                "gated skips (Oktay 2018)"),
    **{f"{FLEXUNET_PREFIX}{b}": ModelInfo(f"{FLEXUNET_PREFIX}{b}", f"MONAI FlexibleUNet on a "
                                          f"MONAI {b} encoder (random init)",
                                          encoder_weights=True)
       for b in EFFICIENTNET_BACKBONES},
}


def list_models() -> list[str]:
    """Registered model names; ``smp-*`` names only when segmentation_models_pytorch imports.

    Every ``flexunet-efficientnet-b0`` ... ``-b8`` / ``-l2`` name is accepted by
    :func:`create_model`; only b0 and b2 are listed.
    """
    return [*_BUILTIN, *_MONAI, *(f"{FLEXUNET_PREFIX}{b}" for b in _FLEX_LISTED),
            *smp_model_names()]


def model_info(name: str) -> ModelInfo:
    """Capabilities of a model name (TorchScript mode, ONNX, encoder weights).

    Raises:
        ModelError: unknown name.
    """
    if name in _INFO:
        return _INFO[name]
    if name.startswith(SMP_PREFIX):
        # smp models trace and export; whether they script depends on the smp version/encoder
        return ModelInfo(name, "segmentation_models_pytorch model", torchscript="trace",
                         encoder_weights=True)
    raise ModelError(f"unknown model {name!r}; use one of: {_known()}")


def _known() -> str:
    return (", ".join(list_models()) + ", flexunet-<efficientnet-bN>, "
            "smp-<arch>-<encoder> (needs smp)")


def _check_options(name: str, cls: Callable[..., nn.Module], kw: dict[str, Any],
                   fixed: set[str]) -> None:
    options = set(inspect.signature(cls).parameters) - fixed
    unknown = sorted(set(kw) - options)
    if unknown:
        raise ModelError(
            f"model {name!r}: unknown option(s) {', '.join(unknown)}; "
            f"use {', '.join(sorted(options)) or '(none)'}"
        )


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
        name: one of :func:`list_models`, e.g. ``fpn-resnet34``, ``unet-resnet18``, ``dynunet``
            or ``flexunet-efficientnet-b0`` (any MONAI EfficientNet after ``flexunet-``).
        in_channels: input image channels.
        classes: number of classes (output channels).
        encoder_weights: optional local ``.pt``/``.pth`` state_dict for the encoder (see
            :func:`~confseg.models.encoders.load_encoder_weights`; a first conv with another
            number of input channels is adapted: summed for 1 channel, else repeated and scaled).
        **kw: architecture options (FPN: ``pyramid_channels``, ``segmentation_channels``,
            ``dropout``, ``head_stride``; U-Net: ``decoder_channels``, ``dropout``; the MONAI
            nets: their class's keyword arguments in :mod:`confseg.models.monai_nets`; smp:
            ``smp.create_model``'s). ``size`` (the training input side) is accepted for every
            model: ``dynunet`` plans its topology from it, the other models ignore it, so
            callers can always pass ``size=cfg.size``.

    Returns:
        The model, with ``model.confseg_spec = {"name", "in_channels", "classes"}`` and
        ``model.input_multiple`` (the multiple inputs are padded to internally) set.

    Raises:
        ModelError: unknown name, smp missing, bad option, ``encoder_weights`` for a model
            without a separate encoder, or a weights file that does not fit.
    """
    if in_channels < 1 or classes < 1:
        raise ModelError(
            f"model {name!r}: in_channels={in_channels} and classes={classes} must both be >= 1"
        )
    size = kw.pop("size", None)
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 1):
        raise ModelError(f"model {name!r}: size={size!r}; give the input side in pixels")
    if name.startswith(SMP_PREFIX):
        model = create_smp_model(name, in_channels=in_channels, classes=classes, **kw)
    elif name in _BUILTIN:
        arch, _, encoder = name.partition("-")
        cls = _ARCHS[arch]
        _check_options(name, cls, kw, {"encoder", "in_channels", "classes"})
        model = cls(encoder, in_channels=in_channels, classes=classes, **kw)
    elif name in _MONAI or name.startswith(FLEXUNET_PREFIX):
        model = _create_monai(name, in_channels=in_channels, classes=classes, size=size, kw=kw)
    else:
        raise ModelError(f"unknown model {name!r}; use one of: {_known()}")
    if encoder_weights is not None:
        if not model_info(name).encoder_weights:
            raise ModelError(
                f"model {name!r} has no separate encoder, so encoder_weights cannot be loaded; "
                "train it from scratch or use an fpn-/unet-/flexunet- model"
            )
        load_encoder_weights(
            model.encoder, encoder_weights, model_name=name,
            input_conv=getattr(model, "encoder_input_conv", "conv1.weight"),
            drop_prefixes=getattr(model, "encoder_unused_prefixes", ("fc.",)),
        )
    model.confseg_spec = {"name": name, "in_channels": in_channels, "classes": classes}
    if not hasattr(model, "input_multiple"):
        model.input_multiple = ENCODER_STRIDE
    return model


def _create_monai(name: str, *, in_channels: int, classes: int, size: int | None,
                  kw: dict[str, Any]) -> nn.Module:
    """Build a MONAI net; MONAI's own ValueError/TypeError for a bad option is a ModelError."""
    args: list[Any] = []
    if name.startswith(FLEXUNET_PREFIX):
        backbone = name.removeprefix(FLEXUNET_PREFIX)
        if backbone not in EFFICIENTNET_BACKBONES:
            hint = ""
            if backbone.startswith("res"):
                hint = (" (FlexibleUNet's ResNets are MedicalNet type-A ResNets that TorchScript "
                        "cannot compile; use unet-resnet18/34/50)")
            raise ModelError(f"model {name!r}: unknown FlexibleUNet backbone {backbone!r}; use "
                             f"flexunet-<backbone> with one of {', '.join(EFFICIENTNET_BACKBONES)}"
                             f"{hint}")
        cls: Callable[..., nn.Module] = FlexUNet
        args = [backbone]
        fixed = {"backbone", "in_channels", "classes"}
    else:
        cls = _MONAI[name]
        fixed = {"in_channels", "classes"}
    _check_options(name, cls, kw, fixed)
    if size is not None and "size" in inspect.signature(cls).parameters:
        kw = {**kw, "size": size}
    try:
        return cls(*args, in_channels=in_channels, classes=classes, **kw)
    except ModelError:
        raise
    except (ValueError, TypeError, AssertionError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ModelError(f"model {name!r}: MONAI rejected the options ({reason})") from exc
