"""Distillation loss: cosine distance between teacher and student features (method paper 3.2.2).

For each level k the per-position distance ``1 - cos(A_k(h, w), S_k(h, w))`` over channels is averaged over
positions (and the batch), then the levels are summed. This is the paper's formula. RD4AD's released code (and
anomalib's ``ReverseDistillationLoss``) instead flattens each whole map into one vector per image before the
cosine; we follow the paper, because the per-position distance is exactly what the anomaly map scores, so the
training objective and the test statistic are the same quantity.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


def cosine_distance_map(teacher: torch.Tensor, student: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """``1 - cos`` over channels at each position: ``(N, C, H, W)`` x2 → ``(N, H, W)``."""
    if teacher.shape != student.shape:
        raise ValueError(
            f"teacher and student features differ in shape ({tuple(teacher.shape)} vs {tuple(student.shape)}); "
            "the student must reconstruct every teacher level at its exact shape."
        )
    return 1.0 - F.cosine_similarity(teacher, student, dim=1, eps=eps)


class ReverseDistillationLoss(nn.Module):
    """Sum over levels of the mean per-position cosine distance."""

    def forward(self, teacher_features: list[torch.Tensor], student_features: list[torch.Tensor]) -> torch.Tensor:
        """Scalar loss; zero exactly when every student vector points like its teacher vector.

        Args:
            teacher_features: Teacher levels shallow to deep.
            student_features: Student reconstructions in the same order and shapes.
        """
        if len(teacher_features) != len(student_features):
            raise ValueError(f"got {len(teacher_features)} teacher levels but {len(student_features)} student levels")
        losses = [cosine_distance_map(t, s).mean() for t, s in zip(teacher_features, student_features, strict=True)]
        return torch.stack(losses).sum()
