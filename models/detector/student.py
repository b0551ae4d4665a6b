"""The student: a custom multi-level residual decoder (method paper section 3.2).

The paper's point is heterogeneity: a student that mirrors the teacher (RD4AD's ``de_resnet``, a ResNet run
backwards with transposed convolutions and the same blocks and widths) is more likely to reproduce the teacher's
response to anomalies as well. This decoder differs from the teacher on purpose:

* upsampling by bilinear interpolation followed by a 3x3 convolution (no transposed convolutions);
* pre-activation residual blocks (BatchNorm → ReLU → conv, He et al. 2016 "Identity Mappings") instead of the
  teacher's post-activation basic/bottleneck blocks;
* its own internal widths and depth per stage (``student_widths``, ``student_blocks``), decoupled from the
  teacher's by a 1x1 output head per level that maps the stage width to the teacher's channels.

It reconstructs the teacher's three levels at their exact shapes (strides 16, 8, 4; channels from the teacher's
``feature_info``).
"""

from __future__ import annotations

import torch
from torch import nn


class PreActResidualBlock(nn.Module):
    """Pre-activation residual block: ``x + conv(relu(bn(conv(relu(bn(x))))))`` at constant width.

    Args:
        channels: Width of the block.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.BatchNorm2d(channels),
            nn.ReLU(inplace=False),
            nn.Conv2d(channels, channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels, channels, 3, padding=1, bias=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Residual update of ``x``."""
        return x + self.body(x)


class UpStage(nn.Module):
    """Double the resolution (unless ``upsample`` is false), change width, refine with residual blocks.

    Args:
        in_channels: Channels coming from the deeper stage.
        width: Internal width of this stage.
        blocks: Number of pre-activation residual blocks.
        upsample: Whether to double the resolution first.
    """

    def __init__(self, in_channels: int, width: int, blocks: int, upsample: bool = True) -> None:
        super().__init__()
        self.upsample: nn.Module = (
            nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False) if upsample else nn.Identity()
        )
        self.project = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True)
        )
        self.blocks = nn.Sequential(*[PreActResidualBlock(width) for _ in range(blocks)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, in, H, W)`` → ``(N, width, 2H, 2W)`` (or ``(H, W)`` without upsampling)."""
        return self.blocks(self.project(self.upsample(x)))


class StudentDecoder(nn.Module):
    """Rebuild the teacher's levels (strides 4, 8, 16) from the stride-32 (or 16) embedding.

    Args:
        embedding_channels: Channels of the bottleneck embedding.
        teacher_channels: Teacher channels shallow to deep (the output channels per level).
        widths: Internal stage widths deep to shallow (strides 16, 8, 4).
        blocks: Residual blocks per stage deep to shallow.
        embedding_stride: Stride of the embedding (32: the first stage upsamples; 16: it does not).
    """

    def __init__(
        self,
        embedding_channels: int,
        teacher_channels: list[int],
        widths: tuple[int, int, int],
        blocks: tuple[int, int, int],
        embedding_stride: int = 32,
    ) -> None:
        super().__init__()
        stages = []
        heads = []
        in_channels = embedding_channels
        for index, (width, count, out_channels) in enumerate(
            zip(widths, blocks, reversed(teacher_channels), strict=True)
        ):
            stages.append(UpStage(in_channels, width, count, upsample=index > 0 or embedding_stride == 32))
            heads.append(
                nn.Sequential(nn.BatchNorm2d(width), nn.ReLU(inplace=False), nn.Conv2d(width, out_channels, 1))
            )
            in_channels = width
        self.stages = nn.ModuleList(stages)
        self.heads = nn.ModuleList(heads)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, embedding: torch.Tensor) -> list[torch.Tensor]:
        """Embedding → ``[s_stride4, s_stride8, s_stride16]`` ordered like the teacher's features."""
        outputs = []
        x = embedding
        for stage, head in zip(self.stages, self.heads, strict=True):
            x = stage(x)
            outputs.append(head(x))
        return outputs[::-1]
