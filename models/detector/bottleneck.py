"""Feature aggregation and filtering module: fusion → ViT → two residual blocks (method paper 3.2.1).

This plays the role of RD4AD's one-class bottleneck embedding (OCBE): it squeezes the teacher's three levels into
one compact code from which the student must rebuild them. Following OCBE, the first of the two residual blocks
(basic blocks, or bottleneck blocks for embeddings of 1024 channels or more, as OCBE does) halves the
resolution, so the embedding has stride 32 and by default ``2 x C_deep`` channels (2048 x 8x8 for WideResNet50 at
256 px; the small and mobile recipes set fewer, e.g. 256 x 4x4 for ResNet18 at 128 px). The low resolution is
what makes the student unable to rebuild anomalous details: it only sees what the compact, normal-trained code
can express. ``embedding_stride=16`` skips the downsampling (a finer code, for small inputs).
"""

from __future__ import annotations

import torch
from torch import nn

from models.detector.feature_fusion import MultiScaleFusion
from models.detector.vit_block import ViTBlock


def _shortcut(in_channels: int, out_channels: int, stride: int) -> nn.Module:
    """Identity, or a strided 1x1 projection with BatchNorm where the block changes shape (as in ResNet)."""
    if stride == 1 and in_channels == out_channels:
        return nn.Identity()
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False), nn.BatchNorm2d(out_channels)
    )


class ResidualBlock(nn.Module):
    """ResNet basic block (two 3x3 conv + BatchNorm, identity or 1x1 projection shortcut, ReLU after the sum).

    Args:
        in_channels: Input channels.
        out_channels: Output channels.
        stride: Stride of the first convolution (and of the projection shortcut).
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut = _shortcut(in_channels, out_channels, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Residual transform of ``x``."""
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class BottleneckResidualBlock(nn.Module):
    """ResNet bottleneck block (1x1 reduce → 3x3 → 1x1 expand, BatchNorm, projection shortcut when needed).

    Used instead of :class:`ResidualBlock` for wide embeddings (as RD4AD's OCBE does for WideResNet50): a
    basic block at 2048 channels would cost ~75 M parameters per block.

    Args:
        in_channels: Input channels.
        out_channels: Output channels (the inner width is a quarter of it).
        stride: Stride of the 3x3 convolution (and of the projection shortcut).
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        inner = max(out_channels // 4, 1)
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, inner, 1, bias=False),
            nn.BatchNorm2d(inner),
            nn.ReLU(inplace=True),
            nn.Conv2d(inner, inner, 3, stride=stride, padding=1, bias=False),
            nn.BatchNorm2d(inner),
            nn.ReLU(inplace=True),
            nn.Conv2d(inner, out_channels, 1, bias=False),
            nn.BatchNorm2d(out_channels),
        )
        self.relu = nn.ReLU(inplace=True)
        self.shortcut = _shortcut(in_channels, out_channels, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Residual transform of ``x``."""
        return self.relu(self.body(x) + self.shortcut(x))


# Embeddings at least this wide use bottleneck blocks (WideResNet50: 2048), narrower ones basic blocks.
BOTTLENECK_BLOCK_FROM = 1024


class AggregationBottleneck(nn.Module):
    """Teacher levels → compact stride-32 embedding.

    Args:
        teacher_channels: Teacher channels shallow to deep.
        fusion_channels: Channels of the fused stride-16 map.
        vit_dim: Token width of the ViT block.
        vit_depth: Transformer layers.
        vit_heads: Attention heads.
        vit_mlp_ratio: Transformer MLP ratio.
        grid_size: Token grid side at the configured image size.
        embedding_channels: Channels of the output embedding.
        vit_dropout: Dropout in the transformer.
        embedding_stride: 32 (first residual block has stride 2, as OCBE) or 16.
        fusion_align_channels: Channels the two shallow levels are brought to (:class:`MultiScaleFusion`).
    """

    def __init__(
        self,
        teacher_channels: list[int],
        fusion_channels: int,
        vit_dim: int,
        vit_depth: int,
        vit_heads: int,
        vit_mlp_ratio: float,
        grid_size: int,
        embedding_channels: int,
        vit_dropout: float = 0.0,
        embedding_stride: int = 32,
        fusion_align_channels: int | None = None,
    ) -> None:
        super().__init__()
        self.fusion = MultiScaleFusion(teacher_channels, fusion_channels, fusion_align_channels)
        self.vit = ViTBlock(fusion_channels, vit_dim, vit_depth, vit_heads, vit_mlp_ratio, grid_size, vit_dropout)
        block = BottleneckResidualBlock if embedding_channels >= BOTTLENECK_BLOCK_FROM else ResidualBlock
        self.residual = nn.Sequential(
            block(vit_dim, embedding_channels, stride=embedding_stride // 16),
            block(embedding_channels, embedding_channels),
        )
        self.out_channels = embedding_channels
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        """``[f4, f8, f16]`` → ``(N, embedding_channels, H/s, W/s)``, ``s`` the embedding stride."""
        return self.residual(self.vit(self.fusion(features)))
