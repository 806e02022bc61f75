"""Validation Dice as torchmetrics objects: sums that reduce correctly across DDP ranks."""

from __future__ import annotations

import torch
from torchmetrics import Metric


class PooledDice(Metric):
    """Dice pooled over every validation pixel, against the strategy's target.

    Hard (``soft=False``): prediction ``p >= 0.5`` against target ``>= 0.5``, on pixels with
    weight > 0. Soft: ``2 sum(p t w) / (sum(p w) + sum(t w))``. Both are 1 when the denominator
    is 0. The two sums are ``dist_reduce_fx="sum"`` states, kept in float64 so millions of
    pixels add up exactly enough.

    Args:
        soft: Soft Dice instead of hard Dice at 0.5.
    """

    full_state_update = False
    higher_is_better = True

    def __init__(self, *, soft: bool) -> None:
        super().__init__()
        self.soft = soft
        self.add_state("inter", default=torch.zeros((), dtype=torch.float64),
                       dist_reduce_fx="sum")
        self.add_state("total", default=torch.zeros((), dtype=torch.float64),
                       dist_reduce_fx="sum")

    def update(self, prob: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> None:
        """Add one batch of probabilities, targets and per-pixel weights (same shape)."""
        if self.soft:
            pw, tw = prob * weight, target * weight
            self.inter += (pw * target).sum(dtype=torch.float64)
            self.total += pw.sum(dtype=torch.float64) + tw.sum(dtype=torch.float64)
        else:
            keep = weight > 0
            hard = (prob >= 0.5) & keep
            ref = (target >= 0.5) & keep
            self.inter += (hard & ref).sum(dtype=torch.float64)
            self.total += hard.sum(dtype=torch.float64) + ref.sum(dtype=torch.float64)

    def compute(self) -> torch.Tensor:
        """The pooled Dice (1 for an empty denominator)."""
        if self.total == 0:
            return torch.ones((), dtype=torch.float64)
        return 2 * self.inter / self.total
