"""Build an :class:`AmamUNet` from a configuration (the function the model registry calls back)."""

from __future__ import annotations

from typing import Any

from models.segmentation.config import SegmenterConfig
from models.segmentation.encoder import build_encoder
from models.segmentation.network import AmamUNet

#: Model-package kind of the segmenter (see :mod:`models.packaging`).
SEGMENTER_KIND = "segmenter"


def build_segmenter(config: SegmenterConfig | dict[str, Any], load_pretrained: bool = True) -> AmamUNet:
    """Build the segmentation network.

    Args:
        config: A :class:`SegmenterConfig` or its :meth:`~SegmenterConfig.to_dict` form (as stored in a model
            package).
        load_pretrained: Fill the encoder from ``config.encoder_weights``. Pass ``False`` when the whole
            network is loaded from a model package right after (``load_model_package`` does this through
            :func:`segmenter_builder`): no weights are fetched or read, and ``weights_info`` says that the random
            weights are meant to be overwritten.

    Returns:
        The network in training mode, with ``.config`` and ``.weights_info`` set.
    """
    if isinstance(config, dict):
        config = SegmenterConfig.from_dict(config)
    elif not isinstance(config, SegmenterConfig):
        raise TypeError(f"config must be a SegmenterConfig or a dict, got {type(config).__name__}")
    encoder, weights_info = build_encoder(config.backbone, config.encoder_weights, load_pretrained)
    return AmamUNet(config, encoder, weights_info)


def segmenter_builder(config: dict[str, Any]) -> AmamUNet:
    """Builder for :func:`models.packaging.load_model_package`: ``{SEGMENTER_KIND: segmenter_builder}``."""
    return build_segmenter(config, load_pretrained=False)
