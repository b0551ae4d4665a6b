"""The reverse-distillation detector: frozen teacher → aggregation bottleneck → student decoder.

Training minimises :class:`models.detector.loss.ReverseDistillationLoss` between what :meth:`forward` returns;
inference uses :meth:`ReverseDistillation.anomaly_map` / :meth:`ReverseDistillation.score`.
"""

from __future__ import annotations

import torch
from torch import nn

from models.backbones import WeightsInfo
from models.detector.anomaly_map import AnomalyMapGenerator
from models.detector.bottleneck import AggregationBottleneck
from models.detector.config import DetectorConfig
from models.detector.student import StudentDecoder
from models.detector.teacher import Teacher
from models.detector.vit_block import ViTBlock

# Default student stage width: the teacher's channels, capped (WideResNet50's 1024-channel level would make 3x3
# residual blocks of ~19 M parameters each; the 1x1 output heads restore the teacher's channels).
MAX_DEFAULT_STUDENT_WIDTH = 512


class ReverseDistillation(nn.Module):
    """Teacher–student anomaly detector of the method paper (section 3.2), after RD4AD.

    Shapes for ``DetectorConfig.small()`` (ResNet18, 128 px): teacher ``(64, 32x32), (128, 16x16), (256, 8x8)``;
    fused map ``(256, 8x8)`` → 64 ViT tokens of width 128 → embedding ``(256, 4x4)``; student outputs equal the
    teacher's shapes; anomaly map ``(1, 128x128)``.

    Args:
        config: Architecture.
        teacher: A built teacher (its weights already chosen by the builder).

    Attributes:
        config: The configuration it was built from.
        weights_info: Where the teacher weights came from (set by the builder).
    """

    def __init__(self, config: DetectorConfig, teacher: Teacher) -> None:
        super().__init__()
        self.config = config
        self.teacher = teacher
        deep = teacher.channels[-1]
        self.bottleneck = AggregationBottleneck(
            teacher_channels=teacher.channels,
            fusion_channels=config.fusion_channels or deep,
            vit_dim=config.vit_dim,
            vit_depth=config.vit_depth,
            vit_heads=config.vit_heads,
            vit_mlp_ratio=config.vit_mlp_ratio,
            grid_size=ViTBlock.grid_for(config.image_size),
            embedding_channels=config.embedding_channels or 2 * deep,
            vit_dropout=config.vit_dropout,
            embedding_stride=config.embedding_stride,
            fusion_align_channels=config.fusion_align_channels,
        )
        widths = config.student_widths or tuple(min(c, MAX_DEFAULT_STUDENT_WIDTH) for c in reversed(teacher.channels))
        self.student = StudentDecoder(
            self.bottleneck.out_channels, teacher.channels, widths, config.student_blocks, config.embedding_stride
        )
        self.anomaly_map_generator = AnomalyMapGenerator(config.image_size, config.smoothing_sigma)
        self.anomaly_map_generator.reset_fusion(config.fusion_weights)
        self.weights_info: WeightsInfo = teacher.weights_info

    def train(self, mode: bool = True) -> ReverseDistillation:
        """Switch the trainable parts; the teacher stays in eval mode (see :meth:`Teacher.train`)."""
        super().train(mode)
        self.teacher.train(False)
        return self

    def trainable_parameters(self) -> list[nn.Parameter]:
        """Parameters of the bottleneck and the student (what the distillation optimiser updates)."""
        return [*self.bottleneck.parameters(), *self.student.parameters()]

    def forward(self, images: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Teacher and student features, shallow to deep, for the distillation loss.

        Args:
            images: ImageNet-normalised batch ``(N, 3, H, W)``; ``H`` and ``W`` multiples of 32.

        Returns:
            ``(teacher_features, student_features)``, equal shapes level by level.
        """
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(
                f"expected a batch of RGB images (N, 3, H, W), got shape {tuple(images.shape)}. Preprocess crops "
                "with models.detector.inference.preprocess_crop."
            )
        if images.shape[-1] % 32 or images.shape[-2] % 32:
            raise ValueError(
                f"image height and width must be multiples of 32 (the embedding has stride 32), got "
                f"{tuple(images.shape[-2:])}. Resize to config.image_size={self.config.image_size}."
            )
        teacher_features = self.teacher(images)
        student_features = self.student(self.bottleneck(teacher_features))
        return teacher_features, student_features

    def anomaly_map(self, images: torch.Tensor) -> torch.Tensor:
        """Fused, smoothed anomaly map ``(N, 1, H, W)`` at the input's size."""
        teacher_features, student_features = self(images)
        return self.anomaly_map_generator(teacher_features, student_features, tuple(images.shape[-2:]))

    def level_maps(self, images: torch.Tensor) -> torch.Tensor:
        """Smoothed per-level distance maps ``(N, 3, H, W)`` before fusion (for fitting the fusion weights)."""
        teacher_features, student_features = self(images)
        return self.anomaly_map_generator.level_maps(teacher_features, student_features, tuple(images.shape[-2:]))

    @property
    def input_size(self) -> int:
        """Side of the square input, in pixels (:class:`models.model_kinds.AnomalyDetector`)."""
        return self.config.image_size

    def score(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Anomaly maps ``(N, 1, H, W)`` and image scores ``(N,)`` (maximum of each map)."""
        maps = self.anomaly_map(images)
        return maps, self.anomaly_map_generator.image_scores(maps)
