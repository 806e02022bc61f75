"""MONAI networks (2-D, random init) behind confseg's model contract.

Every class here returns raw multi-label logits ``(N, classes, H, W)`` at the input size for
any input size: the input is zero-padded (bottom/right) to the network's required multiple
(:attr:`input_multiple`) and the output is cropped back, as :class:`~confseg.models.fpn.FPN`
and :class:`~confseg.models.unet.UNet` do. Nothing is downloaded (``pretrained=False``).

* :class:`BasicUNet2D` -- ``monai.networks.nets.BasicUNet`` (multiple 16).
* :class:`DynUNet2D` -- ``monai.networks.nets.DynUNet`` with a topology planned from the
  training size like nnU-Net's planner (:func:`plan_dynunet`).
* :class:`FlexUNet` -- ``monai.networks.nets.FlexibleUNet`` with MONAI's own EfficientNet
  encoders (multiple 32).
* :class:`SegResNet2D` -- ``monai.networks.nets.SegResNet`` (multiple 8 with 4 levels).
* :class:`AttentionUNet2D` -- ``monai.networks.nets.AttentionUnet`` (multiple 8).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from monai.networks.nets import AttentionUnet, BasicUNet, DynUNet, SegResNet
from monai.networks.nets.efficientnet import EfficientNetEncoder
from monai.networks.nets.flexible_unet import FLEXUNET_BACKBONE
from torch import nn

from confseg.errors import ModelError
from confseg.models.encoders import pad_to_multiple
from confseg.models.unet import unet_decoder

#: FlexibleUNet backbones confseg offers: MONAI's EfficientNets (no torchvision, no download).
#: FlexibleUNet's ResNet backbones are left out: they are MedicalNet ResNets with type-"A"
#: shortcuts that TorchScript cannot compile (see :mod:`confseg.models.unet`).
EFFICIENTNET_BACKBONES: tuple[str, ...] = tuple(EfficientNetEncoder.backbone_names)
#: Batch-norm momentum of the FlexibleUNet encoders (PyTorch's default; MONAI's is 0.01).
BN_MOMENTUM = 0.1


class _Padded(nn.Module):
    """Pad the input to ``input_multiple``, run ``self.net``, crop the output back."""

    def __init__(self, net: nn.Module, input_multiple: int) -> None:
        super().__init__()
        self.net = net
        self.input_multiple = int(input_multiple)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return logits ``(N, classes, H, W)`` for images ``(N, in_channels, H, W)``."""
        h, w = x.shape[-2], x.shape[-1]
        out = self.net(pad_to_multiple(x, self.input_multiple))
        return out[..., :h, :w]


class BasicUNet2D(_Padded):
    """MONAI ``BasicUNet`` (2-D): four max-pool levels, so inputs are padded to a multiple of 16.

    Args:
        in_channels: input image channels.
        classes: output channels (one sigmoid channel per class, multi-label).
        features: the six feature counts (four encoder levels, bottleneck, last decoder level).
        dropout: dropout probability inside the conv blocks.
        upsample: ``"deconv"`` (MONAI's default), ``"pixelshuffle"`` or ``"nontrainable"``.
    """

    def __init__(
        self,
        *,
        in_channels: int,
        classes: int,
        features: Sequence[int] = (32, 32, 64, 128, 256, 32),
        dropout: float = 0.0,
        upsample: str = "deconv",
    ) -> None:
        if len(features) != 6:
            raise ModelError(f"basicunet: features={tuple(features)}; give six numbers")
        net = BasicUNet(spatial_dims=2, in_channels=in_channels, out_channels=classes,
                        features=tuple(features), dropout=dropout, upsample=upsample)
        super().__init__(net, 16)


def plan_dynunet(
    size: int, *, min_feature_map: int = 4, max_levels: int | None = 6
) -> tuple[list[int], list[int]]:
    """Kernel sizes and strides for a square ``size`` input, planned like nnU-Net's planner.

    nnU-Net (``get_pool_and_conv_props``) halves an axis while it is at least twice the minimum
    bottleneck edge (4 px), with 3x3 kernels and an unstrided first stage. For an isotropic 2-D
    input this gives ``strides = [1, 2, 2, ...]``, ending with a 4-7 px bottleneck. nnU-Net v2
    does not cap the depth for 2-D (``max_numpool=999999``: 7 stages at 256 px); confseg caps
    it at ``max_levels`` stages (6 by default: 8 px bottleneck at 256, 5 halvings, multiple 32)
    to keep the CPU cost near the other models; ``max_levels=None`` gives nnU-Net's plan.

    Returns:
        ``(kernel_sizes, strides)``, one entry per stage (the first stride is 1).

    Raises:
        ModelError: ``size`` is too small for the three stages DynUNet needs.
    """
    if max_levels is not None and max_levels < 3:
        raise ModelError(f"dynunet: max_levels={max_levels}; DynUNet needs at least 3 stages")
    strides = [1]
    current = int(size)
    while current >= 2 * min_feature_map and (max_levels is None or len(strides) < max_levels):
        strides.append(2)
        current = math.ceil(current / 2)
    if len(strides) < 3:
        raise ModelError(
            f"dynunet: size={size} allows only {len(strides) - 1} halving(s) to a "
            f"{min_feature_map} px bottleneck; DynUNet needs 2: use size >= {4 * min_feature_map}"
        )
    return [3] * len(strides), strides


class DynUNet2D(_Padded):
    """MONAI ``DynUNet`` (nnU-Net's U-Net) with the topology planned for ``size`` px inputs.

    The model is built before any image is seen, so the planning size is the training size
    (``TrainConfig.size``; 256 by default). Filters are MONAI's (and nnU-Net's) default
    ``32 * 2**stage`` capped at 512; instance norm and leaky ReLU as in nnU-Net. Inputs of any
    size work: they are padded to ``2 ** halvings`` (32 for every ``size >= 128``).

    Deep supervision: with ``deep_supervision=True`` the network has ``deep_supr_num`` extra
    heads and, *in training mode only*, returns them stacked with the main output as
    ``(N, 1 + deep_supr_num, classes, H, W)`` (MONAI's convention; the lower heads are upsampled
    to the input size). confseg's training then applies its loss to every head with weights
    halving per head, as nnU-Net's do (:func:`confseg.losses.deep_supervision_components`). In eval
    mode the network always returns the main output only (MONAI still computes the extra
    heads), so traced and ONNX exports have one output. With deep supervision on,
    ``torch.jit.script`` fails (MONAI's heads write into a shared Python list), so
    ``confseg export`` traces such a network.

    Args:
        in_channels: input image channels.
        classes: output channels (one sigmoid channel per class, multi-label).
        size: square input side used to plan the topology (:func:`plan_dynunet`).
        max_levels: cap on the number of stages (``None``: nnU-Net's uncapped plan).
        filters: feature counts per stage (default: MONAI's ``32 * 2**i`` capped at 512).
        deep_supervision: add deep-supervision heads (training-mode output becomes 5-D).
        deep_supr_num: number of extra heads when ``deep_supervision`` is on.
        res_block: residual conv blocks (MONAI's ``UnetResBlock``) instead of plain ones.
        dropout: dropout probability in the conv blocks (``None`` or 0 disables it).

    Attributes:
        kernel_size, strides: the planned topology.
        torchscript: ``"trace"`` with deep supervision (it does not script), else ``"script"``;
            overrides the registry's ``ModelInfo.torchscript`` for this instance.
    """

    def __init__(
        self,
        *,
        in_channels: int,
        classes: int,
        size: int = 256,
        max_levels: int | None = 6,
        filters: Sequence[int] | None = None,
        deep_supervision: bool = False,
        deep_supr_num: int = 1,
        res_block: bool = False,
        dropout: float | None = None,
    ) -> None:
        kernel_size, strides = plan_dynunet(size, max_levels=max_levels)
        if deep_supervision and not 1 <= deep_supr_num <= len(strides) - 2:
            raise ModelError(f"dynunet: deep_supr_num={deep_supr_num}; use 1..{len(strides) - 2} "
                             f"for the {len(strides)} stages planned for size={size}")
        net = DynUNet(
            spatial_dims=2,
            in_channels=in_channels,
            out_channels=classes,
            kernel_size=kernel_size,
            strides=strides,
            upsample_kernel_size=strides[1:],
            filters=None if filters is None else list(filters),
            dropout=dropout or None,
            deep_supervision=deep_supervision,
            deep_supr_num=deep_supr_num,
            res_block=res_block,
        )
        super().__init__(net, 2 ** (len(strides) - 1))
        self.kernel_size = kernel_size
        self.strides = strides
        self.torchscript = "trace" if deep_supervision else "script"


class FlexUNet(nn.Module):
    """MONAI ``FlexibleUNet`` on one of MONAI's EfficientNet encoders (random init).

    The parts are registered at the top level (``encoder``, ``decoder``, ``segmentation_head``)
    like :class:`~confseg.models.unet.UNet`, so ``encoder_weights`` files hold
    ``model.encoder.state_dict()``. The EfficientNet classifier parts that FlexibleUNet never
    runs (``_conv_head``, ``_bn1``, ``_fc``: 1.7 M parameters for b0) are removed, so every
    parameter gets a gradient (DDP without ``find_unused_parameters``). Inputs are padded to a
    multiple of 32 (the encoder's output stride).

    Args:
        backbone: ``efficientnet-b0`` ... ``efficientnet-b8`` or ``efficientnet-l2``.
        in_channels: input image channels.
        classes: output channels (one sigmoid channel per class, multi-label).
        decoder_channels: channels of the five decoder stages (strides 16, 8, 4, 2, 1).
        dropout: dropout probability inside the decoder conv blocks.
    """

    #: First-conv key and unused keys of the encoder (see ``load_encoder_weights``).
    encoder_input_conv = "_conv_stem.weight"
    encoder_unused_prefixes = ("_conv_head.", "_bn1.", "_fc.")

    def __init__(
        self,
        backbone: str,
        *,
        in_channels: int,
        classes: int,
        decoder_channels: tuple[int, int, int, int, int] = (256, 128, 64, 32, 16),
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if backbone not in EFFICIENTNET_BACKBONES:
            raise ModelError(f"unknown FlexibleUNet backbone {backbone!r}; use one of: "
                             f"{', '.join(EFFICIENTNET_BACKBONES)}")
        entry = FLEXUNET_BACKBONE.register_dict[backbone]
        params = dict(entry["parameter"], spatial_dims=2, in_channels=in_channels,
                      pretrained=False)
        encoder = entry["type"](**params)
        for unused in ("_conv_head", "_conv_head_padding", "_bn1", "_avg_pooling", "_dropout",
                       "_fc"):
            delattr(encoder, unused)
        # MONAI keeps TensorFlow's batch-norm momentum (0.01 in PyTorch terms): over a CPU
        # run's few hundred steps the running statistics then lag the weights so far that
        # the eval-mode network predicted nothing on lus-cs541 (test Dice 0.000 after 240
        # steps, 0.48 max pleural-line probability with batch statistics, 0.02 with the
        # running ones). PyTorch's default 0.1 tracks them.
        for m in encoder.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.momentum = BN_MOMENTUM
        self.encoder = encoder
        self.decoder, self.segmentation_head = unet_decoder(
            (in_channels, *entry["feature_channel"]), decoder_channels, classes=classes,
            dropout=dropout)
        self.skip_connect = entry["feature_number"] - 1
        self.backbone = backbone
        self.input_multiple = 32

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return logits ``(N, classes, H, W)`` for images ``(N, in_channels, H, W)``."""
        h, w = x.shape[-2], x.shape[-1]
        features = self.encoder(pad_to_multiple(x, self.input_multiple))
        logits = self.segmentation_head(self.decoder(features, self.skip_connect))
        return logits[..., :h, :w]


class SegResNet2D(_Padded):
    """MONAI ``SegResNet`` (2-D; Myronenko 2018 without the VAE branch).

    Inputs are padded to ``2 ** (len(blocks_down) - 1)`` (8 with the default four levels).

    Args:
        in_channels: input image channels.
        classes: output channels (one sigmoid channel per class, multi-label).
        init_filters: channels of the first level (doubled at every level; MONAI's default 8).
        blocks_down: residual blocks per encoder level.
        blocks_up: residual blocks per decoder level (one fewer entry than ``blocks_down``).
        dropout: dropout probability after the initial conv (0 disables it).
    """

    def __init__(
        self,
        *,
        in_channels: int,
        classes: int,
        init_filters: int = 8,
        blocks_down: Sequence[int] = (1, 2, 2, 4),
        blocks_up: Sequence[int] = (1, 1, 1),
        dropout: float = 0.0,
    ) -> None:
        if len(blocks_up) != len(blocks_down) - 1:
            raise ModelError(f"segresnet: blocks_up={tuple(blocks_up)} needs one entry fewer "
                             f"than blocks_down={tuple(blocks_down)}")
        net = SegResNet(spatial_dims=2, in_channels=in_channels, out_channels=classes,
                        init_filters=init_filters, blocks_down=tuple(blocks_down),
                        blocks_up=tuple(blocks_up), dropout_prob=dropout or None)
        super().__init__(net, 2 ** (len(blocks_down) - 1))


class AttentionUNet2D(_Padded):
    """MONAI ``AttentionUnet`` (2-D; Oktay et al. 2018, attention-gated skips).

    Inputs are padded to the product of ``strides`` (8 by default).

    Args:
        in_channels: input image channels.
        classes: output channels (one sigmoid channel per class, multi-label).
        channels: feature counts per level.
        strides: downsampling per level (one fewer entry than ``channels``).
        dropout: dropout probability in the conv blocks.
    """

    def __init__(
        self,
        *,
        in_channels: int,
        classes: int,
        channels: Sequence[int] = (32, 64, 128, 256),
        strides: Sequence[int] = (2, 2, 2),
        dropout: float = 0.0,
    ) -> None:
        if len(strides) != len(channels) - 1:
            raise ModelError(f"attention-unet: strides={tuple(strides)} needs one entry fewer "
                             f"than channels={tuple(channels)}")
        net = AttentionUnet(spatial_dims=2, in_channels=in_channels, out_channels=classes,
                            channels=tuple(channels), strides=tuple(strides), dropout=dropout)
        super().__init__(net, math.prod(int(s) for s in strides))
