"""ViT block of the feature aggregation and filtering module (method paper section 3.2.1).

The paper extracts "a 14x14 embedding" from the CNN feature map and feeds it to a transformer (a hybrid
CNN-Transformer encoder as in ViT-hybrid / TransUNet). We read that as a patch embedding of size 1 on the fused
stride-16 map, so every fused position becomes one token: 14x14 tokens at 224 px (the paper's count), 16x16 at
256 px. Tokens get a learnable positional embedding (bicubically interpolated when the grid differs from the one
it was created for), go through pre-norm transformer encoder layers and are folded back into a map.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F


class ViTBlock(nn.Module):
    """Transformer over the positions of a feature map.

    Args:
        in_channels: Channels of the input map.
        dim: Token width.
        depth: Number of transformer encoder layers.
        heads: Attention heads (must divide ``dim``).
        mlp_ratio: MLP hidden width relative to ``dim``.
        grid_size: Token grid side the positional embedding is created for (``image_size // 16``).
        dropout: Dropout in attention and MLP.
    """

    def __init__(
        self,
        in_channels: int,
        dim: int,
        depth: int,
        heads: int,
        mlp_ratio: float,
        grid_size: int,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.patch_embed = nn.Conv2d(in_channels, dim, kernel_size=1)
        self.grid_size = grid_size
        self.pos_embed = nn.Parameter(torch.zeros(1, grid_size * grid_size, dim))
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        layer = nn.TransformerEncoderLayer(
            d_model=dim,
            nhead=heads,
            dim_feedforward=round(dim * mlp_ratio),
            dropout=dropout,
            activation="gelu",
            batch_first=True,
            norm_first=True,
        )
        self.encoder = nn.TransformerEncoder(layer, num_layers=depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)
        self.out_channels = dim

    def positional_embedding(self, height: int, width: int) -> torch.Tensor:
        """Positional embedding for a ``height x width`` grid, ``(1, height*width, dim)``."""
        if (height, width) == (self.grid_size, self.grid_size):
            return self.pos_embed
        dim = self.pos_embed.shape[-1]
        grid = self.pos_embed.reshape(1, self.grid_size, self.grid_size, dim).permute(0, 3, 1, 2)
        grid = F.interpolate(grid, size=(height, width), mode="bicubic", align_corners=False)
        return grid.permute(0, 2, 3, 1).reshape(1, height * width, dim)

    def tokens(self, features: torch.Tensor) -> torch.Tensor:
        """Patch-embed ``(N, C, H, W)`` into ``(N, H*W, dim)`` tokens with positions added."""
        embedded = self.patch_embed(features)
        _, _, height, width = embedded.shape
        return embedded.flatten(2).transpose(1, 2) + self.positional_embedding(height, width)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """``(N, C, H, W)`` → ``(N, dim, H, W)``."""
        batch, _, height, width = features.shape
        tokens = self.norm(self.encoder(self.tokens(features)))
        return tokens.transpose(1, 2).reshape(batch, -1, height, width)

    @staticmethod
    def grid_for(image_size: int) -> int:
        """Token grid side for a square input of ``image_size`` pixels (stride 16)."""
        return math.ceil(image_size / 16)
