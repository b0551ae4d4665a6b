"""U-Net decoder: four skip-fusion stages from stride 16 back to full resolution (method paper sec. 3.1.1).

Stage ``k`` (k = 4, 3, 2, 1) brings the decoder features to the resolution of encoder level ``k`` (stride
``2**k``), passes the level-``k`` skip through an attention gate (levels in ``gated_levels``) or a 1x1
convolution (the others), concatenates, and fuses with two 3x3 convolutions. Level 4 has the AMAM's own stride
(16), so its stage does not upsample; the stages of levels 3, 2, 1 and the final head each upsample by 2,
which gives the paper's four upsampling steps from stride 16 to stride 1.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from models.segmentation.amam import ConvBNReLU
from models.segmentation.gate_attention import AttentionGate, SkipProjection, resize_to


class DecoderStage(nn.Module):
    """Upsample, filter the skip (gate or 1x1), concatenate, two 3x3 convolutions.

    Args:
        in_channels: Channels of the incoming decoder features (also the gating signal).
        skip_channels: Channels of the encoder skip at this level.
        out_channels: Channels out of this stage; the skip is projected to the same number.
        gated: Whether the skip goes through an :class:`AttentionGate` rather than a 1x1 convolution.
    """

    def __init__(self, in_channels: int, skip_channels: int, out_channels: int, gated: bool) -> None:
        super().__init__()
        self.gated = gated
        self.skip: nn.Module
        if gated:
            inter = max(out_channels // 2, 1)
            self.skip = AttentionGate(skip_channels, in_channels, inter, out_channels)
        else:
            self.skip = SkipProjection(skip_channels, out_channels)
        self.fuse = nn.Sequential(
            ConvBNReLU(in_channels + out_channels, out_channels, kernel_size=3),
            ConvBNReLU(out_channels, out_channels, kernel_size=3),
        )

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = resize_to(x, skip)
        return self.fuse(torch.cat([x, self.skip(skip, x)], dim=1))


class SegmentationDecoder(nn.Module):
    """Four :class:`DecoderStage` s (levels 4 to 1) and a full-resolution classification head.

    Args:
        in_channels: Channels of the AMAM output.
        skip_channels: Channels of encoder levels 1..4 (stride 2, 4, 8, 16), shallow first.
        decoder_channels: Output channels of the stages for levels 4, 3, 2, 1 (deepest first).
        gated_levels: Levels whose skip is gated.
        head_channels: Channels of the 3x3 refinement convolution at full resolution.
        num_classes: Number of output logits per pixel.
    """

    def __init__(
        self,
        in_channels: int,
        skip_channels: Sequence[int],
        decoder_channels: Sequence[int],
        gated_levels: Sequence[int],
        head_channels: int,
        num_classes: int,
    ) -> None:
        super().__init__()
        if len(skip_channels) != 4 or len(decoder_channels) != 4:
            raise ValueError("the decoder needs exactly four skip levels and four decoder channel counts")
        self.levels = (4, 3, 2, 1)
        stages = []
        channels = in_channels
        for level, out_channels in zip(self.levels, decoder_channels, strict=True):
            stages.append(DecoderStage(channels, skip_channels[level - 1], out_channels, level in gated_levels))
            channels = out_channels
        self.stages = nn.ModuleList(stages)
        self.head = nn.Sequential(
            ConvBNReLU(channels, head_channels, kernel_size=3), nn.Conv2d(head_channels, num_classes, 1)
        )

    def stage_for_level(self, level: int) -> DecoderStage:
        """The stage that fuses the skip of encoder level ``level`` (1..4)."""
        return self.stages[self.levels.index(level)]

    def forward(self, x: torch.Tensor, skips: Sequence[torch.Tensor], output_size: tuple[int, int]) -> torch.Tensor:
        """Decode.

        Args:
            x: AMAM output at stride 16.
            skips: Encoder features of levels 1..4, shallow first.
            output_size: ``(H, W)`` of the logits (the padded input size).
        """
        for level, stage in zip(self.levels, self.stages, strict=True):
            x = stage(x, skips[level - 1])
        x = F.interpolate(x, size=output_size, mode="bilinear", align_corners=False)
        return self.head(x)
