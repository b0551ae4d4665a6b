"""Build a detector from its configuration (for training, and for loading a saved package)."""

from __future__ import annotations

import contextlib
import logging
from typing import Any

from models.backbones import RANDOM_INIT, WeightsInfo, weights_to_be_replaced
from models.detector.config import DetectorConfig
from models.detector.network import ReverseDistillation
from models.detector.teacher import Teacher

logger = logging.getLogger(__name__)

DETECTOR_KIND = "detector"


def build_detector(config: DetectorConfig | dict[str, Any], load_pretrained: bool = True) -> ReverseDistillation:
    """Build the reverse-distillation detector.

    Args:
        config: A :class:`DetectorConfig` or its :meth:`DetectorConfig.to_dict` form (from a model package).
        load_pretrained: Fill the teacher from ``config.teacher_weights``. ``False`` builds the same
            architecture with random weights and fetches nothing: use it with
            :func:`models.packaging.load_model_package`, which loads every weight from the package.

    Returns:
        The network (train mode, CPU); ``.config`` holds the config and ``.weights_info`` where the teacher
        weights came from.
    """
    if isinstance(config, dict):
        config = DetectorConfig.from_dict(config)
    weights = config.teacher_weights if load_pretrained else RANDOM_INIT
    with contextlib.nullcontext() if load_pretrained else weights_to_be_replaced():
        teacher = Teacher(
            config.backbone,
            weights=weights,
            zero_init_last=config.teacher_zero_init_last,
            standardise=config.feature_standardisation,
            features=config.teacher_features,
        )
    model = ReverseDistillation(config, teacher)
    if not load_pretrained:
        model.weights_info = WeightsInfo(
            source="package",
            detail=f"architecture only; weights to be loaded from a package (trained with "
            f"teacher_weights={config.teacher_weights!r})",
            pretrained=config.teacher_weights not in (RANDOM_INIT, "", None),
        )
    elif not teacher.weights_info.pretrained:
        logger.warning(
            "detector teacher %s is randomly initialised: anomaly scores rest on random features. Pass "
            "teacher_weights='timm' or a state-dict file for the paper's ImageNet-pretrained teacher.",
            config.backbone,
        )
    return model


def detector_builder(config: dict[str, Any]) -> ReverseDistillation:
    """Builder for :func:`models.packaging.load_model_package` (``{DETECTOR_KIND: detector_builder}``)."""
    return build_detector(config, load_pretrained=False)


__all__ = ["DETECTOR_KIND", "build_detector", "detector_builder"]
