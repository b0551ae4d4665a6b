"""Stage 2: the reverse-distillation detector (method paper, section 3.2; after RD4AD, Deng & Li, CVPR 2022).

Public API::

    from models.detector import (
        DetectorConfig, build_detector, DETECTOR_KIND,          # architecture
        train_detector, DetectorTrainResult,                    # training + fusion fit + calibration
        Calibration, calibrate,                                 # thresholds, normalisation to 0.5
        evaluate_detector,                                      # metrics on an MVTec-layout test set
        preprocess_crops, score_images, score_crops,            # inference on numpy crops
        save_detector, load_detector,                           # model packages with calibration
    )

Submodules are imported lazily by these names so that ``import models.detector`` stays cheap.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {
    "DetectorConfig": "models.detector.config",
    "build_detector": "models.detector.builder",
    "detector_builder": "models.detector.builder",
    "DETECTOR_KIND": "models.detector.builder",
    "ReverseDistillation": "models.detector.network",
    "train_detector": "models.detector.training",
    "DetectorTrainResult": "models.detector.training",
    "Calibration": "models.detector.calibration",
    "calibrate": "models.detector.calibration",
    "evaluate_detector": "models.detector.evaluation",
    "preprocess_crop": "models.detector.inference",
    "preprocess_crops": "models.detector.inference",
    "score_images": "models.detector.inference",
    "score_crops": "models.detector.inference",
    "resize_map": "models.detector.inference",
    "save_detector": "models.detector.package",
    "load_detector": "models.detector.package",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'models.detector' has no attribute {name!r}")
