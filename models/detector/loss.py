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


def cosine_distance_map(teacher: torch.Tensor, student: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """``1 - cos`` over channels at each position, in float32: ``(N, C, H, W)`` x2 → ``(N, H, W)``.

    Written out (dot product over the product of norms, each norm at least ``eps`` as in
    ``F.cosine_similarity``) because ``F.cosine_similarity`` over the channel dimension is 2.6 to 7 times slower on
    a CPU (docs/scoring.md, "Session 10"); the two agree within 2e-7. Float32 also under bf16 autocast, where a
    bf16 channel sum would blur the distances.
    """
    if teacher.shape != student.shape:
        raise ValueError(
            f"teacher and student features differ in shape ({tuple(teacher.shape)} vs {tuple(student.shape)}); "
            "the student must reconstruct every teacher level at its exact shape."
        )
    teacher, student = teacher.float(), student.float()
    floor = eps * eps  # on the squared norm, so the gradient stays finite at a zero vector
    norms = teacher.square().sum(dim=1).clamp_min(floor).sqrt() * student.square().sum(dim=1).clamp_min(floor).sqrt()
    return 1.0 - (teacher * student).sum(dim=1) / norms


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
