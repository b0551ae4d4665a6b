"""Adaptive Multi-Scale Attention Module (AMAM, method paper sec. 3.1.2).

The AMAM sits on the deepest (stride 16) encoder features. It follows DeepLab v3+'s ASPP layout — parallel
1x1, dilated 3x3 and image-pooling paths, concatenated and projected — with two changes from the paper:

* the dilated 3x3 paths are depthwise separable (depthwise dilated 3x3, then pointwise 1x1, each followed by
  BN + ReLU as in DeepLab v3+'s separable ASPP), which cuts their parameters roughly by the number of output
  channels;
* the concatenation goes through a spatial self-attention block before the projection, so every position can
  draw on every other (the paper's "σ, ⊗": a sigmoid of a matrix product of query and key).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn


class ConvBNReLU(nn.Sequential):
    """Convolution without bias, BatchNorm, ReLU: the building block of every AMAM path."""

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int = 1, dilation: int = 1, groups: int = 1
    ) -> None:
        padding = dilation * (kernel_size - 1) // 2
        super().__init__(
            nn.Conv2d(
                in_channels,
                out_channels,
                kernel_size,
                padding=padding,
                dilation=dilation,
                groups=groups,
                bias=False,
            ),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )


class SeparableDilatedConv(nn.Sequential):
    """Depthwise dilated 3x3 convolution followed by a pointwise 1x1 convolution (Xception / DeepLab v3+).

    A plain 3x3 convolution costs ``9 * C_in * C_out`` weights; this one costs ``9 * C_in + C_in * C_out``.
    """

    def __init__(self, in_channels: int, out_channels: int, dilation: int) -> None:
        super().__init__(
            ConvBNReLU(in_channels, in_channels, kernel_size=3, dilation=dilation, groups=in_channels),
            ConvBNReLU(in_channels, out_channels, kernel_size=1),
        )
        self.dilation = dilation


class PoolingPath(nn.Module):
    """Global average pooling, 1x1 convolution, BN, ReLU, then broadcast back to the input size.

    BatchNorm over a 1x1 map needs more than one sample in training: the training loop keeps batches full.
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.project = ConvBNReLU(in_channels, out_channels, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = self.project(self.pool(x))
        return pooled.expand(-1, -1, x.shape[-2], x.shape[-1])


class SigmoidSpatialAttention(nn.Module):
    """Self-attention over spatial positions with a sigmoid affinity and a residual connection.

    For ``N = H*W`` positions, ``Q = W_q X``, ``K = W_k X``, ``V = W_v X`` (1x1 convolutions) and

    ``A = σ(Qᵀ K / sqrt(d))``  (N x N),  ``Y = X + γ · (V ⊗ Aᵀ) / N``.

    The sigmoid is the paper's σ; unlike a softmax it lets a position attend to many others at once. Dividing
    by ``N`` keeps the output scale independent of the image size (a sigmoid row does not sum to 1). ``γ``
    starts at 0 (as in DANet), so the block begins as the identity and learns how much context to add.
    Memory grows with ``N²``: 1024 positions (512 px input) is 4 MiB per image in float32.
    """

    def __init__(self, channels: int, key_channels: int | None = None) -> None:
        super().__init__()
        key_channels = key_channels or max(channels // 8, 1)
        self.key_channels = key_channels
        self.query = nn.Conv2d(channels, key_channels, 1)
        self.key = nn.Conv2d(channels, key_channels, 1)
        self.value = nn.Conv2d(channels, channels, 1)
        self.gamma = nn.Parameter(torch.zeros(1))

    def affinity(self, x: torch.Tensor) -> torch.Tensor:
        """The ``(B, N, N)`` sigmoid affinity between positions (row: query, column: key)."""
        batch = x.shape[0]
        query = self.query(x).reshape(batch, self.key_channels, -1)
        key = self.key(x).reshape(batch, self.key_channels, -1)
        return torch.sigmoid(torch.bmm(query.transpose(1, 2), key) / math.sqrt(self.key_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, channels, height, width = x.shape
        attention = self.affinity(x)
        value = self.value(x).reshape(batch, channels, -1)
        context = torch.bmm(value, attention.transpose(1, 2)) / attention.shape[-1]
        return x + self.gamma * context.reshape(batch, channels, height, width)


class AMAM(nn.Module):
    """Six parallel paths at different scales, concatenated, self-attended and projected.

    Paths: 1x1 convolution; one 3x3 dilated convolution per rate in ``dilation_rates`` (depthwise separable by
    default); global average pooling. Each path has BN + ReLU and ``out_channels`` channels. The spatial size
    is unchanged.

    Args:
        in_channels: Channels of the encoder features (2048 for ResNet50, 512 for ResNet18).
        out_channels: Channels of every path and of the output.
        dilation_rates: One dilated path per rate; the paper uses (4, 8, 12, 16).
        key_channels: Query/key channels of the self-attention (default: concatenated channels / 8).
        dropout: Dropout probability after the output projection.
        separable: ``False`` builds plain dilated 3x3 convolutions (for parameter comparisons and ablations).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int = 256,
        dilation_rates: Sequence[int] = (4, 8, 12, 16),
        key_channels: int | None = None,
        dropout: float = 0.1,
        separable: bool = True,
    ) -> None:
        super().__init__()
        self.dilation_rates = tuple(int(r) for r in dilation_rates)
        dilated: list[nn.Module] = []
        for rate in self.dilation_rates:
            if separable:
                dilated.append(SeparableDilatedConv(in_channels, out_channels, rate))
            else:
                dilated.append(ConvBNReLU(in_channels, out_channels, kernel_size=3, dilation=rate))
        self.paths = nn.ModuleList(
            [ConvBNReLU(in_channels, out_channels, 1), *dilated, PoolingPath(in_channels, out_channels)]
        )
        concat_channels = out_channels * len(self.paths)
        self.attention = SigmoidSpatialAttention(concat_channels, key_channels)
        self.project = nn.Sequential(
            ConvBNReLU(concat_channels, out_channels, 1),
            nn.Dropout(dropout) if dropout > 0 else nn.Identity(),
        )
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = torch.cat([path(x) for path in self.paths], dim=1)
        return self.project(self.attention(features))
