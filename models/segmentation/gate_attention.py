"""Skip-connection paths of the decoder: additive attention gate, or a plain 1x1 convolution.

The gate is the additive attention gate of Attention U-Net (Oktay et al., 2018), which the method paper
(sec. 3.1.3) puts on the skip connections of its three shallowest levels: the coarse decoder features ``g``
decide, per pixel, how much of the fine encoder features ``x`` pass through, suppressing background clutter in
the skip before it is fused.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def resize_to(x: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Bilinearly resize ``x`` to the spatial size of ``reference`` (no-op when they match)."""
    if x.shape[-2:] == reference.shape[-2:]:
        return x
    return F.interpolate(x, size=reference.shape[-2:], mode="bilinear", align_corners=False)


class AttentionGate(nn.Module):
    """Additive attention gate: ``α = σ(ψ(ReLU(W_x x + W_g g)))``, output ``W(x · α)``.

    As in Attention U-Net's grid attention block, ``W_x``, ``W_g`` and ``ψ`` are 1x1 convolutions with
    BatchNorm, ``α`` is one coefficient per pixel, and the gated features go through a 1x1 convolution ``W``
    (with BN, and a ReLU here so both skip paths end alike). We compute the gate at the skip's resolution with
    ``g`` upsampled bilinearly (the common re-implementation), rather than Oktay's strided ``W_x``, so the same
    gate also works on the deepest skip, whose resolution equals the gating signal's.

    Args:
        skip_channels: Channels of the encoder skip ``x``.
        gate_channels: Channels of the gating signal ``g`` (the coarser decoder features).
        inter_channels: Channels of the intermediate additive space.
        out_channels: Channels of the output projection ``W``.
    """

    def __init__(self, skip_channels: int, gate_channels: int, inter_channels: int, out_channels: int) -> None:
        super().__init__()
        self.w_x = nn.Sequential(
            nn.Conv2d(skip_channels, inter_channels, 1, bias=False), nn.BatchNorm2d(inter_channels)
        )
        self.w_g = nn.Sequential(
            nn.Conv2d(gate_channels, inter_channels, 1, bias=False), nn.BatchNorm2d(inter_channels)
        )
        self.psi = nn.Sequential(nn.Conv2d(inter_channels, 1, 1, bias=False), nn.BatchNorm2d(1), nn.Sigmoid())
        self.out = nn.Sequential(
            nn.Conv2d(skip_channels, out_channels, 1, bias=False), nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True)
        )

    def coefficients(self, x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        """Attention coefficients ``α`` in (0, 1), shape ``(B, 1, H_x, W_x)``."""
        return self.psi(F.relu(self.w_x(x) + self.w_g(resize_to(g, x))))

    def forward(self, x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        return self.out(x * self.coefficients(x, g))


class SkipProjection(nn.Module):
    """Ungated skip path: 1x1 convolution, BN, ReLU (the paper's choice for the deepest level).

    Takes the gating signal too, and ignores it, so the decoder can call both skip paths alike.
    """

    def __init__(self, skip_channels: int, out_channels: int) -> None:
        super().__init__()
        self.out = nn.Sequential(
            nn.Conv2d(skip_channels, out_channels, 1, bias=False), nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True)
        )

    def forward(self, x: torch.Tensor, g: torch.Tensor | None = None) -> torch.Tensor:
        del g
        return self.out(x)
