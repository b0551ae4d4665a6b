"""The AMAM U-Net: dilated ResNet encoder, AMAM, gated U-Net decoder (method paper sec. 3.1)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from models.backbones import WeightsInfo
from models.segmentation.amam import AMAM
from models.segmentation.config import OUTPUT_STRIDE, SegmenterConfig
from models.segmentation.decoder import SegmentationDecoder
from models.segmentation.encoder import DilatedResNetEncoder


class AmamUNet(nn.Module):
    """Segmentation network mapping a normalised image to per-pixel class logits.

    Build it with :func:`models.segmentation.builder.build_segmenter`, which also fills the encoder weights.

    Inputs whose height or width is not a multiple of 16 are zero-padded at the bottom and right (zero is the
    ImageNet mean after normalisation) and the logits are cropped back, so any size works.

    Attributes:
        config: The configuration the network was built from.
        weights_info: Where the encoder weights came from (set by the builder).
    """

    def __init__(self, config: SegmenterConfig, encoder: DilatedResNetEncoder, weights_info: WeightsInfo) -> None:
        super().__init__()
        self.config = config
        self.weights_info = weights_info
        self.encoder = encoder
        self.amam = AMAM(
            encoder.channels[-1],
            config.amam_channels,
            config.dilation_rates,
            key_channels=config.amam_key_channels,
            dropout=config.amam_dropout,
            separable=config.separable,
        )
        self.decoder = SegmentationDecoder(
            config.amam_channels,
            encoder.channels[:4],
            config.decoder_channels,
            config.gated_levels,
            config.head_channels,
            config.num_classes,
        )

    @property
    def num_classes(self) -> int:
        return self.config.num_classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Per-pixel logits.

        Args:
            x: ``(N, 3, H, W)`` float images, ImageNet-normalised.

        Returns:
            ``(N, num_classes, H, W)`` logits.
        """
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"expected a (N, 3, H, W) image batch, got shape {tuple(x.shape)}")
        height, width = x.shape[-2:]
        pad_h, pad_w = (-height) % OUTPUT_STRIDE, (-width) % OUTPUT_STRIDE
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h))
        features = self.encoder(x)
        logits = self.decoder(self.amam(features[-1]), features[:4], (x.shape[-2], x.shape[-1]))
        return logits[..., :height, :width]
