"""Multi-scale feature fusion (MFF, method paper section 3.2.1; RD4AD's OCBE front half).

The student has to rebuild shallow, local features from a compact code. Feeding it only the deepest teacher
level would make that hard (section 3.2.1), so the shallow levels are brought down to the deepest level's
resolution with 3x3 stride-2 convolutions (BatchNorm + ReLU) and concatenated with it; a 1x1 convolution
(BatchNorm + ReLU) then mixes the three into one map.

The paper does not say how wide the downsampled levels are. RD4AD's OCBE brings them to the deepest level's
channels (the default). A recipe may bring them to fewer (``align_channels``): for MobileNet V2's expanded
activations (144, 192, 576 channels) the OCBE widths make the fusion cost three quarters of the teacher.
"""

from __future__ import annotations

import torch
from torch import nn


def conv_bn_relu(in_channels: int, out_channels: int, kernel_size: int, stride: int) -> nn.Sequential:
    """Convolution (no bias, BatchNorm follows), BatchNorm and ReLU."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=kernel_size // 2, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class MultiScaleFusion(nn.Module):
    """Fuse teacher levels of strides 4, 8, 16 into one stride-16 map.

    Shapes for ``wide_resnet50_2`` at 256 px: ``(256, 64x64)`` → two stride-2 convs → ``(1024, 16x16)``;
    ``(512, 32x32)`` → one stride-2 conv → ``(1024, 16x16)``; concatenated with ``(1024, 16x16)`` →
    ``(3072, 16x16)`` → 1x1 conv → ``(out_channels, 16x16)``.

    Args:
        in_channels: Teacher channels shallow to deep, e.g. ``[64, 128, 256]`` for ResNet18.
        out_channels: Channels of the fused map.
        align_channels: Channels of the two downsampled levels; ``None`` means the deepest level's (OCBE: the
            stride-4 level passes through the middle level's width on the way).
    """

    def __init__(self, in_channels: list[int], out_channels: int, align_channels: int | None = None) -> None:
        super().__init__()
        if len(in_channels) != 3:
            raise ValueError(f"MultiScaleFusion expects three teacher levels, got channels {in_channels}")
        shallow, middle, deep = in_channels
        align, passing = (align_channels, align_channels) if align_channels else (deep, middle)
        self.down_shallow = nn.Sequential(
            conv_bn_relu(shallow, passing, 3, 2),  # stride 4 -> 8
            conv_bn_relu(passing, align, 3, 2),  # stride 8 -> 16
        )
        self.down_middle = conv_bn_relu(middle, align, 3, 2)  # stride 8 -> 16
        self.mix = conv_bn_relu(2 * align + deep, out_channels, 1, 1)
        self.out_channels = out_channels

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        """Fuse ``[f_stride4, f_stride8, f_stride16]`` into ``(N, out_channels, H/16, W/16)``."""
        shallow, middle, deep = features
        fused = torch.cat([self.down_shallow(shallow), self.down_middle(middle), deep], dim=1)
        return self.mix(fused)
