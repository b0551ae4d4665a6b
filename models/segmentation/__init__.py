"""Stage 1: the AMAM U-Net segmentation model (method paper, section 3.1).

Typical use::

    from models.segmentation import SegmenterConfig, train_segmenter, predict_mask

    result = train_segmenter(SegmenterConfig.small(), "data/segmentation", max_minutes=5)
    labels = predict_mask(result.model, frame)  # (h, w) uint8 at config.input_long_side

Submodules are imported lazily by these names, so that ``import models.segmentation.recipes`` stays cheap (the
command line reads the recipes without loading torch).

See ``docs/segmenter.md`` for the architecture, the choices made where the paper is vague, and the recipe.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_MODULES = {
    "models.segmentation.augmentation": ("AugmentConfig",),
    "models.segmentation.builder": ("SEGMENTER_KIND", "build_segmenter", "segmenter_builder"),
    "models.segmentation.config": ("SegmenterConfig",),
    "models.segmentation.data": ("SegmentationFolder", "split_train_val"),
    "models.segmentation.inference": ("evaluate_segmenter", "predict_mask", "predict_masks"),
    "models.segmentation.loss": ("CrossEntropyDiceLoss",),
    "models.segmentation.network": ("AmamUNet",),
    "models.segmentation.recipes": ("SegmenterRecipe", "recipe_for"),
    "models.segmentation.training": ("SegmenterTrainResult", "train_segmenter"),
}
_EXPORTS = {name: module for module, names in _MODULES.items() for name in names}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'models.segmentation' has no attribute {name!r}")
