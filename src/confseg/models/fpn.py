"""Semantic FPN (Kirillov et al., Panoptic Feature Pyramid Networks, 2019) on a ResNet encoder."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from confseg.errors import ModelError
from confseg.models.encoders import ResNetEncoder, pad_to_multiple


def _group_count(channels: int, preferred: int = 32) -> int:
    """Largest group count <= ``preferred`` that divides ``channels`` (GroupNorm needs it)."""
    for groups in range(min(preferred, channels), 0, -1):
        if channels % groups == 0:
            return groups
    return 1


class ConvGNReLU(nn.Sequential):
    """3x3 conv (no bias) -> GroupNorm -> ReLU, optionally followed by 2x bilinear upsampling."""

    def __init__(self, in_channels: int, out_channels: int, *, upsample: bool) -> None:
        layers: list[nn.Module] = [
            nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=False),
            nn.GroupNorm(_group_count(out_channels), out_channels),
            nn.ReLU(inplace=True),
        ]
        if upsample:
            layers.append(nn.Upsample(scale_factor=2.0, mode="bilinear", align_corners=False))
        super().__init__(*layers)


class SegmentationBranch(nn.Sequential):
    """Per-level branch: conv-GN-ReLU(-up2x) blocks taking a level at stride 2**k to stride 4."""

    def __init__(self, in_channels: int, out_channels: int, *, n_upsamples: int) -> None:
        blocks: list[nn.Module] = [ConvGNReLU(in_channels, out_channels, upsample=n_upsamples > 0)]
        for _ in range(1, n_upsamples):
            blocks.append(ConvGNReLU(out_channels, out_channels, upsample=True))
        super().__init__(*blocks)


class FPNDecoder(nn.Module):
    """Lateral 1x1 convs, top-down nearest-upsample-and-add, per-level branches summed.

    Args:
        encoder_channels: channels of the encoder outputs at strides 4, 8, 16, 32.
        pyramid_channels: channels of the pyramid levels P2..P5.
        segmentation_channels: channels of every segmentation branch.
    """

    def __init__(
        self,
        encoder_channels: tuple[int, ...],
        *,
        pyramid_channels: int = 256,
        segmentation_channels: int = 128,
    ) -> None:
        super().__init__()
        self.laterals = nn.ModuleList(
            [nn.Conv2d(c, pyramid_channels, kernel_size=1) for c in encoder_channels]
        )
        # Level i (stride 4 * 2**i) needs i 2x upsamplings to reach stride 4.
        self.branches = nn.ModuleList(
            [
                SegmentationBranch(pyramid_channels, segmentation_channels, n_upsamples=i)
                for i in range(len(encoder_channels))
            ]
        )

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        """Map ``[c2, c3, c4, c5]`` (sizes exactly halving) to a stride-4 feature map."""
        # Indexed loops over the ModuleLists keep this TorchScript-scriptable.
        laterals: list[torch.Tensor] = []
        for i, conv in enumerate(self.laterals):
            laterals.append(conv(features[i]))
        pyramid: list[torch.Tensor] = [laterals[-1]]
        for i in range(len(laterals) - 2, -1, -1):
            top = F.interpolate(pyramid[0], scale_factor=2.0, mode="nearest")
            pyramid.insert(0, laterals[i] + top)
        merged = pyramid[0]
        for i, branch in enumerate(self.branches):
            level = branch(pyramid[i])
            merged = level if i == 0 else merged + level
        return merged


class RefineStage(nn.Module):
    """2x bilinear upsampling, concatenation with a finer encoder map, two conv-GN-ReLU blocks.

    Used only by ``FPN(head_stride=2 or 1)``: it carries the stride-4 FPN features to stride 2
    (with the stem's features) and to stride 1 (with the input image), as a U-Net decoder does.
    """

    def __init__(self, in_channels: int, skip_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv1 = ConvGNReLU(in_channels + skip_channels, out_channels, upsample=False)
        self.conv2 = ConvGNReLU(out_channels, out_channels, upsample=False)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        """Upsample ``x`` to ``skip``'s size (exactly 2x), concatenate, convolve."""
        x = F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)
        return self.conv2(self.conv1(torch.cat([x, skip], dim=1)))


class FPN(nn.Module):
    """Semantic FPN returning raw logits ``(N, classes, H, W)`` at the input size.

    Inputs of any size work: they are zero-padded (bottom/right) to a multiple of 32 and the
    output is cropped back, so every pyramid level is exactly twice the next one.

    Args:
        encoder: a ResNet encoder name (``resnet18``, ``resnet34``, ``resnet50``).
        in_channels: input image channels.
        classes: output channels (one sigmoid channel per class, multi-label).
        pyramid_channels: channels of the FPN levels.
        segmentation_channels: channels of the per-level segmentation branches.
        dropout: Dropout2d probability before the classifier (0 disables it).
        head_stride: stride of the classifier's input. 4 (the default, semantic FPN as
            published and as in segmentation_models_pytorch): the 1x1 classifier runs on the
            stride-4 map and its logits are bilinearly upsampled x4. 2 or 1: one or two
            :class:`RefineStage` s first bring the features to stride 2 (concatenated with the
            stride-2 stem output) and to stride 1 (concatenated with the input), so boundaries
            finer than 4 px can be drawn (docs/models.md). An option to measure; default off.
    """

    def __init__(
        self,
        encoder: str,
        *,
        in_channels: int,
        classes: int,
        pyramid_channels: int = 256,
        segmentation_channels: int = 128,
        dropout: float = 0.0,
        head_stride: int = 4,
    ) -> None:
        super().__init__()
        if head_stride not in (4, 2, 1):
            raise ModelError(f"FPN head_stride={head_stride!r}; use 4 (default), 2 or 1")
        refine = {4: 0, 2: 1, 1: 2}[head_stride]
        self.encoder = ResNetEncoder(encoder, in_channels=in_channels, include_stem=refine > 0)
        self.decoder = FPNDecoder(
            self.encoder.out_channels,
            pyramid_channels=pyramid_channels,
            segmentation_channels=segmentation_channels,
        )
        # stride 2 joins the stem (64 channels), stride 1 the input image
        skips = [self.encoder.stem_channels, in_channels][:refine]
        widths = [segmentation_channels // 2, segmentation_channels // 4][:refine]
        stages: list[nn.Module] = []
        channels = segmentation_channels
        for skip, width in zip(skips, widths, strict=True):
            stages.append(RefineStage(channels, skip, max(width, 8)))
            channels = max(width, 8)
        self.refine = nn.ModuleList(stages)
        self.head_stride = head_stride
        self.input_multiple = 32
        self.dropout = nn.Dropout2d(p=dropout) if dropout > 0 else nn.Identity()
        self.classifier = nn.Conv2d(channels, classes, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return logits ``(N, classes, H, W)`` for images ``(N, in_channels, H, W)``."""
        h, w = x.shape[-2], x.shape[-1]
        padded = pad_to_multiple(x)
        features = self.encoder(padded)
        if len(self.refine) == 0:
            logits = self.classifier(self.dropout(self.decoder(features)))
            logits = F.interpolate(logits, scale_factor=4.0, mode="bilinear",
                                   align_corners=False)
            return logits[..., :h, :w]
        # head_stride 2 or 1: features = [stem, c2..c5]; refine from stride 4 to the head stride
        skips = [features[0], padded]
        y = self.decoder(features[1:])
        for i, stage in enumerate(self.refine):
            y = stage(y, skips[i])
        logits = self.classifier(self.dropout(y))
        if self.head_stride == 2:
            logits = F.interpolate(logits, scale_factor=2.0, mode="bilinear",
                                   align_corners=False)
        return logits[..., :h, :w]
