"""Stage 1: the AMAM U-Net segmentation model (method paper, section 3.1).

Typical use::

    from models.segmentation import SegmenterConfig, train_segmenter, predict_mask

    result = train_segmenter(SegmenterConfig.small(), "data/segmentation", image_size=256, max_minutes=5)
    labels = predict_mask(result.model, frame)  # (h, w) uint8 at config.input_long_side

See ``docs/segmenter.md`` for the architecture, the choices made where the paper is vague, and the recipe.
"""

from models.segmentation.augmentation import AugmentConfig
from models.segmentation.builder import SEGMENTER_KIND, build_segmenter, package_builder
from models.segmentation.config import SegmenterConfig
from models.segmentation.data import SegmentationFolder, split_train_val
from models.segmentation.inference import evaluate_segmenter, predict_mask, predict_masks
from models.segmentation.loss import CrossEntropyDiceLoss
from models.segmentation.network import AmamUNet
from models.segmentation.training import SegmenterTrainResult, train_segmenter

__all__ = [
    "SEGMENTER_KIND",
    "AmamUNet",
    "AugmentConfig",
    "CrossEntropyDiceLoss",
    "SegmentationFolder",
    "SegmenterConfig",
    "SegmenterTrainResult",
    "build_segmenter",
    "evaluate_segmenter",
    "package_builder",
    "predict_mask",
    "predict_masks",
    "split_train_val",
    "train_segmenter",
]
