"""Training loss: pixel-wise cross-entropy plus soft Dice.

Cross-entropy gives every pixel a well-behaved gradient; the Dice term measures overlap per class, so a small
component in a large frame weighs as much as the background — the usual remedy for the class imbalance of
industrial frames. Pixels labelled :data:`IGNORE_INDEX` (padding, rotation fill) count in neither term.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from models.segmentation.preprocessing import IGNORE_INDEX


def soft_dice_loss(
    logits: torch.Tensor, target: torch.Tensor, ignore_index: int = IGNORE_INDEX, smooth: float = 1.0
) -> torch.Tensor:
    """``1 - mean_c dice_c`` with softmax probabilities, pooled over the whole batch.

    Args:
        logits: ``(N, C, H, W)`` raw scores.
        target: ``(N, H, W)`` labels.
        ignore_index: Label of pixels to leave out.
        smooth: Added to numerator and denominator so that a class absent from both target and prediction
            scores a Dice of 1 rather than 0/0.
    """
    num_classes = logits.shape[1]
    valid = (target != ignore_index).unsqueeze(1)
    probabilities = logits.softmax(dim=1) * valid
    one_hot = F.one_hot(target.clamp(0, num_classes - 1).masked_fill(~valid[:, 0], 0), num_classes)
    one_hot = one_hot.permute(0, 3, 1, 2).to(probabilities.dtype) * valid
    dims = (0, 2, 3)
    intersection = (probabilities * one_hot).sum(dims)
    cardinality = probabilities.sum(dims) + one_hot.sum(dims)
    dice = (2 * intersection + smooth) / (cardinality + smooth)
    return 1 - dice.mean()


class CrossEntropyDiceLoss(nn.Module):
    """``ce_weight * CE + dice_weight * soft Dice``.

    Args:
        ce_weight: Weight of the cross-entropy term.
        dice_weight: Weight of the Dice term.
        ignore_index: Label of pixels to leave out of both terms.
    """

    def __init__(self, ce_weight: float = 1.0, dice_weight: float = 1.0, ignore_index: int = IGNORE_INDEX) -> None:
        super().__init__()
        self.ce_weight = ce_weight
        self.dice_weight = dice_weight
        self.ignore_index = ignore_index

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        ce = F.cross_entropy(logits, target, ignore_index=self.ignore_index)
        return self.ce_weight * ce + self.dice_weight * soft_dice_loss(logits, target, self.ignore_index)
