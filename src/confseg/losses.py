"""Soft-target segmentation loss with per-pixel weights (BCE + soft Dice after a sigmoid)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

#: Intersection forms of the soft Dice term (:class:`SoftBCEDiceLoss` ``dice``).
DICE_FORMS = ("product", "semimetric")


class SoftBCEDiceLoss(nn.Module):
    r"""Weighted binary cross-entropy plus weighted soft Dice on soft multi-label targets.

    Inputs are logits ``z`` (N, K, H, W), targets ``t`` in [0, 1] of the same shape and a
    non-negative weight map ``w`` broadcastable to it (e.g. (N, 1, H, W)); ``w = 0`` marks
    ignored pixels. With ``p = sigmoid(z)``:

    * ``bce = Σ w·ℓ(z, t) / Σ w`` over all of (n, k, h, w), where
      ``ℓ(z, t) = -t·log p - (1 - t)·log(1 - p)`` is computed stably from the logits
      (``binary_cross_entropy_with_logits``); ``bce = 0`` when ``Σ w = 0``.
    * For each (image n, class k), with sums over (h, w):
      ``d_nk = 1 - (2·Σ w p t + s) / (Σ w p + Σ w t + s)``; ``dice`` is the mean of ``d_nk``
      over the pairs with ``Σ w > 0`` (pairs with zero weight sum are left out of the mean,
      not counted as 0); ``dice = 0`` when no pair has weight. With ``batch_dice=True`` the
      sums also run over the batch, giving one ``d_k`` per class.
    * ``loss = bce_weight·bce + dice_weight·dice``.

    The intersection ``Σ w p t`` (``dice="product"``, the usual soft Dice) is not smallest at
    ``p = t`` when ``t`` is soft: it rewards pushing ``p`` to 1 wherever ``t`` is above about
    half and to 0 elsewhere, so it sharpens probabilities that should follow a rater fraction.
    ``dice="semimetric"`` uses ``(Σ w p + Σ w t - Σ w |p - t|) / 2`` instead (the Dice
    semimetric loss of Wang & Blaschko, 2023; MONAI's ``DiceLoss(soft_label=True)``): the same
    value and gradient as ``product`` for hard targets, and zero loss exactly at ``p = t``.

    Zero-weight pixels contribute nothing and receive exactly zero gradient; their targets are
    replaced by 0 first, so they may hold anything (even NaN). A fully ignored batch gives
    ``loss = 0`` with zero (finite) gradients.

    ``smooth`` defaults to 1 (pixel units): negligible next to real sums, and it gives a pair
    with an empty target a useful gradient towards p = 0 (``d = 1 - s/(Σ w p + s)``) instead of
    a constant 1.

    Args:
        bce_weight: factor on the BCE term.
        dice_weight: factor on the Dice term.
        smooth: ``s`` in the Dice formula, >= 0.
        batch_dice: pool Dice sums over the batch (nnU-Net's batch Dice) instead of per image.
        dice: intersection form, ``product`` or ``semimetric`` (see above).
    """

    def __init__(
        self,
        *,
        bce_weight: float = 1.0,
        dice_weight: float = 1.0,
        smooth: float = 1.0,
        batch_dice: bool = False,
        dice: str = "product",
    ) -> None:
        super().__init__()
        if bce_weight < 0 or dice_weight < 0 or smooth < 0:
            raise ValueError(
                f"bce_weight={bce_weight}, dice_weight={dice_weight} and smooth={smooth} "
                "must all be >= 0"
            )
        self.bce_weight = float(bce_weight)
        self.dice_weight = float(dice_weight)
        self.smooth = float(smooth)
        self.batch_dice = bool(batch_dice)
        if dice not in DICE_FORMS:
            raise ValueError(f"dice={dice!r}; choose one of {', '.join(DICE_FORMS)}")
        self.dice = dice

    def extra_repr(self) -> str:
        """Show the configuration in ``repr(loss)``."""
        return (
            f"bce_weight={self.bce_weight}, dice_weight={self.dice_weight}, "
            f"smooth={self.smooth}, batch_dice={self.batch_dice}, dice={self.dice!r}"
        )

    def components(
        self,
        logits: torch.Tensor,
        target: torch.Tensor,
        weight: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """Return ``{"loss", "bce", "dice"}`` as scalar tensors (``loss`` is differentiable).

        Args:
            logits: raw model outputs (N, K, H, W).
            target: soft targets in [0, 1], same shape as ``logits``.
            weight: per-pixel weights >= 0, broadcastable to ``logits`` (None means all 1).
        """
        if logits.ndim < 3 or target.shape != logits.shape:
            raise ValueError(
                f"logits {tuple(logits.shape)} and target {tuple(target.shape)} must have the "
                "same (N, K, ...) shape"
            )
        z = logits.float()
        if weight is None:
            w = torch.ones_like(z)
        else:
            try:
                w = torch.broadcast_to(weight.to(z.dtype), z.shape)
            except RuntimeError as exc:
                raise ValueError(
                    f"weight {tuple(weight.shape)} is not broadcastable to logits {tuple(z.shape)}"
                ) from exc
        keep = w > 0
        t = torch.where(keep, target.to(z.dtype), torch.zeros_like(z))
        zero = z.new_zeros(())

        bce_map = F.binary_cross_entropy_with_logits(z, t, reduction="none")
        w_sum = w.sum()
        bce_total = torch.where(keep, w * bce_map, torch.zeros_like(z)).sum()
        bce = torch.where(w_sum > 0, bce_total / w_sum.clamp_min(1e-12), zero)

        p = torch.sigmoid(z)
        dims = (0, *range(2, z.ndim)) if self.batch_dice else tuple(range(2, z.ndim))
        p_sum = (w * p).sum(dims)
        t_sum = (w * t).sum(dims)
        if self.dice == "semimetric":
            inter = (p_sum + t_sum - (w * (p - t).abs()).sum(dims)) / 2
        else:
            inter = (w * p * t).sum(dims)
        valid = w.sum(dims) > 0
        num = torch.where(valid, 2 * inter + self.smooth, torch.ones_like(inter))
        den = torch.where(valid, p_sum + t_sum + self.smooth, torch.ones_like(inter))
        per_pair = torch.where(valid, 1 - num / den.clamp_min(1e-12), torch.zeros_like(inter))
        n_valid = valid.sum()
        dice = torch.where(n_valid > 0, per_pair.sum() / n_valid.clamp_min(1), zero)

        loss = self.bce_weight * bce + self.dice_weight * dice
        return {"loss": loss, "bce": bce.detach(), "dice": dice.detach()}

    def forward(
        self,
        logits: torch.Tensor,
        target: torch.Tensor,
        weight: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Return the scalar loss; see the class docstring for the formulas."""
        return self.components(logits, target, weight)["loss"]


def deep_supervision_components(
    loss: SoftBCEDiceLoss,
    outputs: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """Deep-supervision loss over stacked heads, as ``{"loss", "bce", "dice"}``.

    The heads are weighted 1, 1/2, 1/4, ... as in nnU-Net (which also gives its lowest head
    weight 0; here every head MONAI returns counts, since ``deep_supr_num`` already chooses).

    Args:
        loss: The loss applied to every head against the full-size target.
        outputs: ``(N, 1 + D, K, H, W)`` logits, the main head first (MONAI ``DynUNet`` in
            training mode, its lower heads already upsampled to the input size).
        target: ``(N, K, H, W)`` soft targets.
        weight: Per-pixel weights broadcastable to ``target``.

    Returns:
        Each part averaged over the heads with weights halving per head (1, 1/2, 1/4, ...),
        normalised to sum to 1, so one head gives the plain loss.
    """
    if outputs.ndim != target.ndim + 1:
        raise ValueError(f"stacked heads {tuple(outputs.shape)} need one more axis than the "
                         f"target {tuple(target.shape)}")
    heads = outputs.unbind(1)
    scale = [0.5**i for i in range(len(heads))]
    total = sum(scale)
    parts = [loss.components(h, target, weight) for h in heads]
    return {k: sum(s * p[k] for s, p in zip(scale, parts, strict=True)) / total
            for k in parts[0]}
