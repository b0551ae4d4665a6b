"""Dilated ResNet encoder with output stride 16 (method paper, sec. 3.1.1; DeepLab v3+).

timm builds the ResNet with ``output_stride=16``: ``layer4`` keeps the stride-16 resolution of ``layer3`` and
dilates its 3x3 convolutions by 2 instead, so the deepest features see a large context without losing the
resolution the decoder needs.
"""

from __future__ import annotations

import torch
from torch import nn

from models.backbones import RANDOM_INIT, WeightsInfo, create_feature_extractor, weights_to_be_replaced
from models.segmentation.config import OUTPUT_STRIDE

#: timm ``features_only`` indices: stem (stride 2), layer1 (4), layer2 (8), layer3 (16), dilated layer4 (16).
ENCODER_OUT_INDICES: tuple[int, ...] = (0, 1, 2, 3, 4)
EXPECTED_REDUCTIONS: list[int] = [2, 4, 8, 16, OUTPUT_STRIDE]


class DilatedResNetEncoder(nn.Module):
    """timm ResNet returning five feature levels, the deepest at stride 16.

    Attributes:
        channels: Channels of the five levels, shallow to deep.
        reductions: Stride of the five levels: ``[2, 4, 8, 16, 16]``.
    """

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        reductions = list(backbone.feature_info.reduction())
        if reductions != EXPECTED_REDUCTIONS:
            raise ValueError(
                f"backbone returns features at strides {reductions}, the segmenter needs {EXPECTED_REDUCTIONS}. "
                "Use a timm ResNet (resnet18, resnet34, resnet50, resnet101) built with output_stride=16 "
                "(build_segmenter does this)."
            )
        self.body = backbone
        self.channels: list[int] = list(backbone.feature_info.channels())
        self.reductions = reductions

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Return the five feature maps, shallow to deep."""
        return list(self.body(x))


def build_encoder(
    backbone: str, weights: str, load_pretrained: bool = True
) -> tuple[DilatedResNetEncoder, WeightsInfo]:
    """Build the dilated encoder and fill its weights.

    Args:
        backbone: timm ResNet name.
        weights: ``"none"``, ``"timm"`` or a state-dict path (see :mod:`models.backbones`).
        load_pretrained: When ``False`` the weights source is ignored and the encoder is randomly initialised;
            use this when the whole network's weights are loaded from a model package right after.

    Returns:
        The encoder and where its weights came from.
    """
    if load_pretrained:
        body, info = create_feature_extractor(backbone, ENCODER_OUT_INDICES, weights, output_stride=OUTPUT_STRIDE)
    else:
        with weights_to_be_replaced():
            body, _ = create_feature_extractor(backbone, ENCODER_OUT_INDICES, RANDOM_INIT, output_stride=OUTPUT_STRIDE)
        info = WeightsInfo(
            source="random",
            detail=(
                f"{backbone} random initialisation (load_pretrained=False; configured encoder_weights={weights!r} "
                "not loaded): expected to be overwritten by a model package load"
            ),
            pretrained=False,
        )
    return DilatedResNetEncoder(body), info
