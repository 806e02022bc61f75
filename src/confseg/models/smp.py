"""Optional segmentation_models_pytorch (smp) models, named ``smp-<arch>-<encoder>``.

smp is an optional dependency (``pip install confseg[smp]``); it needs torchvision/timm, which
the CPU torch build used here cannot load, so these names exist only when smp imports cleanly.
"""

from __future__ import annotations

import importlib
from functools import lru_cache
from types import ModuleType

from torch import nn

from confseg.errors import ModelError

SMP_PREFIX = "smp-"
#: (arch, encoder) pairs listed by ``list_models`` when smp is importable.
SMP_ARCHS = ("fpn", "unet")
SMP_ENCODERS = ("resnet18", "resnet34", "resnet50")


@lru_cache(maxsize=1)
def _import_smp() -> tuple[ModuleType | None, str]:
    """Import smp once; return ``(module, "")`` or ``(None, reason)``.

    Not :func:`confseg.io.optional.require`: smp can fail to import in ways other than
    ImportError (a torchvision/timm ABI mismatch), the answer is cached for
    :func:`smp_model_names`, and a missing smp is a :class:`ModelError` (the model cannot be
    built) whose message keeps the reason and names a built-in alternative.
    """
    try:
        module = importlib.import_module("segmentation_models_pytorch")
    except Exception as exc:  # an optional import may fail in many ways (ABI, missing deps)
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return None, reason
    return module, ""


def smp_available() -> bool:
    """True when segmentation_models_pytorch imports cleanly."""
    return _import_smp()[0] is not None


def smp_model_names() -> list[str]:
    """Names of the smp models offered when smp is importable (empty otherwise)."""
    if not smp_available():
        return []
    return [f"{SMP_PREFIX}{a}-{e}" for a in SMP_ARCHS for e in SMP_ENCODERS]


def create_smp_model(name: str, *, in_channels: int, classes: int, **kw: object) -> nn.Module:
    """Build ``smp.create_model(arch, encoder_name=..., encoder_weights=None, ...)``.

    Args:
        name: ``smp-<arch>-<encoder>``, e.g. ``smp-fpn-resnet34`` or ``smp-unetplusplus-resnet18``.
        in_channels: input image channels.
        classes: output channels.
        **kw: passed on to ``smp.create_model``.

    Raises:
        ModelError: smp is not importable, or the name is malformed / unknown to smp.
    """
    module, reason = _import_smp()
    if module is None:
        raise ModelError(
            f"model {name!r}: segmentation_models_pytorch is not installed (or failed to import: "
            f"{reason}); pip install 'confseg[smp]', or use fpn-resnet34"
        )
    arch, sep, encoder = name.removeprefix(SMP_PREFIX).partition("-")
    if not sep or not arch or not encoder:
        raise ModelError(f"model {name!r}: expected smp-<arch>-<encoder>, e.g. smp-fpn-resnet34")
    try:
        return module.create_model(
            arch,
            encoder_name=encoder,
            encoder_weights=None,
            in_channels=in_channels,
            classes=classes,
            **kw,
        )
    except (KeyError, ValueError) as exc:
        raise ModelError(
            f"model {name!r}: segmentation_models_pytorch rejected it ({exc}); "
            "check the arch and encoder names"
        ) from exc
