"""ResNet encoders (MONAI's 2D ResNet) used as multi-scale feature extractors.

The encoder keeps the torchvision ResNet layout (``conv1``, ``bn1``, ``layer1`` ... ``layer4``,
1x1-conv "B" shortcuts, 7x7 stride-2 stem), so its ``state_dict`` keys match a torchvision
ResNet's (minus ``fc``). Nothing is ever downloaded: weights come only from a local file.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from monai.networks.nets.resnet import ResNet, ResNetBlock, ResNetBottleneck
from torch import nn

from confseg.errors import ModelError

#: Encoder name -> (block type, blocks per stage).
RESNET_SPECS: dict[str, tuple[type[nn.Module], list[int]]] = {
    "resnet18": (ResNetBlock, [2, 2, 2, 2]),
    "resnet34": (ResNetBlock, [3, 4, 6, 3]),
    "resnet50": (ResNetBottleneck, [3, 4, 6, 3]),
}

#: Output stride of the deepest feature map; inputs are padded to a multiple of it.
ENCODER_STRIDE = 32



class ResNetEncoder(nn.Module):
    """MONAI ResNet (2D) returning the stage outputs instead of class scores.

    Args:
        name: one of ``RESNET_SPECS`` (``resnet18``, ``resnet34``, ``resnet50``).
        in_channels: number of input image channels.
        include_stem: when True, ``forward`` also returns the stride-2 stem output first.

    Attributes:
        out_channels: channels of the four stage outputs (strides 4, 8, 16, 32).
        stem_channels: channels of the stride-2 stem output.
    """

    def __init__(self, name: str, *, in_channels: int, include_stem: bool = False) -> None:
        super().__init__()
        if name not in RESNET_SPECS:
            known = ", ".join(RESNET_SPECS)
            raise ModelError(f"unknown encoder {name!r}; use one of: {known}")
        block, layers = RESNET_SPECS[name]
        net = ResNet(
            block=block,  # type: ignore[arg-type]
            layers=layers,
            block_inplanes=[64, 128, 256, 512],
            spatial_dims=2,
            n_input_channels=in_channels,
            conv1_t_size=7,
            conv1_t_stride=2,
            shortcut_type="B",
            bias_downsample=False,
            feed_forward=False,
        )
        # Re-register the parts we use at the top level so state_dict keys match torchvision's.
        self.conv1 = net.conv1
        self.bn1 = net.bn1
        self.act = net.act
        self.maxpool = net.maxpool
        self.layer1 = net.layer1
        self.layer2 = net.layer2
        self.layer3 = net.layer3
        self.layer4 = net.layer4
        self.name = name
        self.in_channels = in_channels
        self.include_stem = include_stem
        expansion = 4 if block is ResNetBottleneck else 1
        self.out_channels: tuple[int, int, int, int] = (
            64 * expansion,
            128 * expansion,
            256 * expansion,
            512 * expansion,
        )
        self.stem_channels = 64

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Return ``[c2, c3, c4, c5]`` (strides 4..32), preceded by the stem if ``include_stem``."""
        stem = self.act(self.bn1(self.conv1(x)))
        c2 = self.layer1(self.maxpool(stem))
        c3 = self.layer2(c2)
        c4 = self.layer3(c3)
        c5 = self.layer4(c4)
        if self.include_stem:
            return [stem, c2, c3, c4, c5]
        return [c2, c3, c4, c5]


def pad_to_multiple(x: torch.Tensor, multiple: int = ENCODER_STRIDE) -> torch.Tensor:
    """Zero-pad the bottom and right of ``(N, C, H, W)`` so H and W are multiples of ``multiple``.

    The pad amounts are computed from ``x.shape`` so traced / ONNX-exported models keep working
    at other input sizes. Crop the result back with ``out[..., :H, :W]``.
    """
    h, w = x.shape[-2], x.shape[-1]
    pad_h = (multiple - h % multiple) % multiple
    pad_w = (multiple - w % multiple) % multiple
    return F.pad(x, [0, pad_w, 0, pad_h])


_WRAPPERS = ("module.", "model.")  # DDP / DataParallel, LightningModule attribute
_PARTS = ("encoder.", "backbone.")


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise ModelError(
            f"encoder weights file {path} not found; confseg never downloads weights: "
            "pass a local .pt/.pth state_dict"
        )
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a bad file
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ModelError(
            f"cannot read encoder weights {path} ({reason}); save it with "
            "torch.save(encoder.state_dict(), path)"
        ) from exc
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ModelError(
            f"encoder weights {path} is not a state_dict (a dict of tensors, or "
            '{"state_dict": ...}); save it with torch.save(encoder.state_dict(), path)'
        )
    return obj


def _normalise_keys(
    state: dict[str, torch.Tensor], drop_prefixes: tuple[str, ...] = ("fc.",)
) -> dict[str, torch.Tensor]:
    """Strip wrapper prefixes; keep only ``encoder.``/``backbone.`` keys if any; drop ``fc.``."""
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        while key.startswith(_WRAPPERS):
            key = key.split(".", 1)[1]
        out[key] = value
    for prefix in _PARTS:
        if any(k.startswith(prefix) for k in out):
            out = {k.removeprefix(prefix): v for k, v in out.items() if k.startswith(prefix)}
    return {k: v for k, v in out.items() if not k.startswith(drop_prefixes)}


def adapt_input_conv(weight: torch.Tensor, in_channels: int) -> torch.Tensor:
    """Adapt a first-conv kernel ``(O, C_w, kh, kw)`` to ``in_channels`` inputs.

    One input channel: the kernels are summed over channels, so a grey image gives the
    activations the original weights give on that image repeated to ``C_w`` channels.
    Otherwise the kernels are repeated cyclically and scaled by ``C_w / in_channels`` (the same
    property for an image whose channels are all equal). This is timm's convention.
    """
    c_w = weight.shape[1]
    if c_w == in_channels:
        return weight
    if in_channels == 1:
        return weight.sum(dim=1, keepdim=True)
    idx = torch.arange(in_channels) % c_w
    return weight[:, idx] * (c_w / in_channels)


def _short(keys: list[str], limit: int = 5) -> str:
    shown = ", ".join(keys[:limit])
    return f"[{shown}{f', ... +{len(keys) - limit} more' if len(keys) > limit else ''}]"


def load_encoder_weights(
    encoder: nn.Module,
    path: str | Path,
    *,
    model_name: str,
    input_conv: str = "conv1.weight",
    drop_prefixes: tuple[str, ...] = ("fc.",),
) -> None:
    """Load a local state_dict file into ``encoder`` (in place, strict).

    Accepts a raw state_dict or ``{"state_dict": ...}`` (e.g. a Lightning checkpoint); strips
    ``module.``/``model.`` wrapper prefixes, then ``encoder.`` or ``backbone.`` (when such keys
    exist, the other keys, e.g. a decoder's, are ignored) and drops a classifier's ``fc.*``
    keys, so torchvision ResNet files load too. A missing ``num_batches_tracked`` buffer is
    tolerated. When the file's first conv has a different number of input channels than the
    encoder, it is adapted with :func:`adapt_input_conv`.

    Args:
        encoder: the model's encoder (``model.encoder``).
        path: the local state_dict file.
        model_name: the registered model name, for messages.
        input_conv: the encoder's first-conv weight key (``_conv_stem.weight`` for MONAI's
            EfficientNet).
        drop_prefixes: keys of parts the encoder does not have (a classifier), ignored.

    Raises:
        ModelError: the file is missing/unreadable, or its keys or shapes do not match.
    """
    path = Path(path)
    state = _normalise_keys(_read_state_dict(path), drop_prefixes)
    own = encoder.state_dict()
    conv_key = input_conv
    in_channels = own[conv_key].shape[1] if conv_key in own else None
    if conv_key in state and in_channels is not None and state[conv_key].ndim == 4:
        state[conv_key] = adapt_input_conv(state[conv_key], int(in_channels))
    missing = [k for k in own if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in own]
    if missing or unexpected:
        raise ModelError(
            f"encoder weights {path} do not match the {model_name} encoder: missing keys "
            f"{_short(missing)}, unexpected keys {_short(unexpected)}; pass a state_dict saved "
            f"from a {model_name} encoder (model.encoder.state_dict())"
        )
    bad = [
        f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}"
        for k in own
        if k in state and state[k].shape != own[k].shape
    ]
    if bad:
        raise ModelError(
            f"encoder weights {path} do not match the {model_name} encoder: shape mismatch "
            f"{_short(bad)}; pass a state_dict saved from a {model_name} encoder"
        )
    encoder.load_state_dict(state, strict=False)
