"""U-Net: MONAI FlexibleUNet's decoder and head on confseg's ResNet encoder.

MONAI's ``FlexibleUNet(backbone="resnet18")`` builds without torchvision, but its ResNet-18/34
backbones are the MedicalNet variants with type-"A" shortcuts: a ``functools.partial`` that
zero-pads the identity through ``tensor.data`` (so no gradient flows through those shortcuts)
and that ``torch.jit.script`` cannot compile. This module therefore reuses FlexibleUNet's own
``UNetDecoder`` and ``SegmentationHead`` with :class:`~confseg.models.encoders.ResNetEncoder`
(torchvision layout, 1x1-conv shortcuts), which gives every model the same encoder and the
same ``encoder_weights`` files.
"""

from __future__ import annotations

import torch
from monai.networks.nets.flexible_unet import SegmentationHead, UNetDecoder
from torch import nn

from confseg.models.encoders import ResNetEncoder, pad_to_multiple


def unet_decoder(encoder_channels: tuple[int, ...], decoder_channels: tuple[int, ...], *,
                 classes: int, dropout: float) -> tuple[nn.Module, nn.Module]:
    """MONAI's FlexibleUNet decoder and 3x3 head, configured once for every confseg U-Net."""
    decoder = UNetDecoder(
        spatial_dims=2,
        encoder_channels=encoder_channels,
        decoder_channels=decoder_channels,
        act=("relu", {"inplace": True}),
        norm=("batch", {"eps": 1e-3, "momentum": 0.1}),
        dropout=dropout,
        bias=False,
        upsample="nontrainable",
        pre_conv="default",
        interp_mode="nearest",
        align_corners=None,
        is_pad=False,
    )
    head = SegmentationHead(spatial_dims=2, in_channels=decoder_channels[-1],
                            out_channels=classes, kernel_size=3)
    return decoder, head

class UNet(nn.Module):
    """U-Net returning raw logits ``(N, classes, H, W)`` at the input size.

    Inputs of any size work: they are zero-padded (bottom/right) to a multiple of 32 and the
    output is cropped back.

    Args:
        encoder: a ResNet encoder name (``resnet18``, ``resnet34``, ``resnet50``).
        in_channels: input image channels.
        classes: output channels (one sigmoid channel per class, multi-label).
        decoder_channels: channels of the five decoder stages (strides 16, 8, 4, 2, 1).
        dropout: dropout probability inside the decoder conv blocks.
    """

    def __init__(
        self,
        encoder: str,
        *,
        in_channels: int,
        classes: int,
        decoder_channels: tuple[int, int, int, int, int] = (256, 128, 64, 32, 16),
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.encoder = ResNetEncoder(encoder, in_channels=in_channels, include_stem=True)
        encoder_channels = (in_channels, self.encoder.stem_channels, *self.encoder.out_channels)
        self.decoder, self.segmentation_head = unet_decoder(
            encoder_channels, decoder_channels, classes=classes, dropout=dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return logits ``(N, classes, H, W)`` for images ``(N, in_channels, H, W)``."""
        h, w = x.shape[-2], x.shape[-1]
        features = self.encoder(pad_to_multiple(x))
        logits = self.segmentation_head(self.decoder(features, 4))
        return logits[..., :h, :w]
