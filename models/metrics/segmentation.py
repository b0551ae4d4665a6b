"""Semantic segmentation metrics from a confusion matrix: IoU per class, mean IoU, pixel accuracy.

Convention: ``cm[t, p]`` counts pixels of true class ``t`` predicted as ``p``. A class that appears neither in
the targets nor in the predictions has an undefined IoU (NaN) and is left out of the mean, so a validation set
without some class is not rewarded or punished for it. Pixels whose target is outside ``[0, num_classes)``
(e.g. the 255 padding label) are ignored.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def _to_numpy(array: Any) -> np.ndarray:
    if hasattr(array, "detach"):  # torch tensor, without importing torch here
        array = array.detach().cpu().numpy()
    return np.asarray(array)


def confusion_matrix(prediction: Any, target: Any, num_classes: int) -> np.ndarray:
    """Confusion matrix of integer label maps of the same shape (numpy arrays or torch tensors).

    Args:
        prediction: Predicted labels.
        target: True labels; values outside ``[0, num_classes)`` are ignored.
        num_classes: Number of classes ``C``.

    Returns:
        ``(C, C)`` int64 matrix, rows true class, columns predicted class.
    """
    prediction, target = _to_numpy(prediction), _to_numpy(target)
    if prediction.shape != target.shape:
        raise ValueError(f"prediction shape {prediction.shape} differs from target shape {target.shape}")
    target = target.astype(np.int64).ravel()
    prediction = prediction.astype(np.int64).ravel()
    valid = (target >= 0) & (target < num_classes)
    if np.any((prediction[valid] < 0) | (prediction[valid] >= num_classes)):
        raise ValueError(f"predictions must be class indices in [0, {num_classes})")
    counts = np.bincount(target[valid] * num_classes + prediction[valid], minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes)


def iou_per_class(cm: np.ndarray) -> np.ndarray:
    """IoU of each class, ``TP / (TP + FP + FN)``; NaN for classes absent from targets and predictions."""
    cm = np.asarray(cm, dtype=np.float64)
    true_positive = np.diag(cm)
    union = cm.sum(axis=0) + cm.sum(axis=1) - true_positive
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, true_positive / np.where(union > 0, union, 1), np.nan)


def mean_iou(cm: np.ndarray) -> float:
    """Mean IoU over the classes present in the targets or the predictions (NaN if there are none)."""
    ious = iou_per_class(cm)
    return float(np.nanmean(ious)) if np.any(~np.isnan(ious)) else float("nan")


def pixel_accuracy(cm: np.ndarray) -> float:
    """Fraction of counted pixels predicted correctly (NaN when no pixel was counted)."""
    cm = np.asarray(cm)
    total = cm.sum()
    return float(np.trace(cm) / total) if total else float("nan")


class SegmentationMeter:
    """Accumulates a confusion matrix over batches and reports the scores.

    Args:
        num_classes: Number of classes.
        class_names: Optional names used as keys of ``per_class_iou`` (indices as strings otherwise).
    """

    def __init__(self, num_classes: int, class_names: Sequence[str] | None = None) -> None:
        if class_names is not None and len(class_names) != num_classes:
            raise ValueError(f"got {len(class_names)} class names for {num_classes} classes")
        self.num_classes = num_classes
        self.class_names = list(class_names) if class_names is not None else [str(i) for i in range(num_classes)]
        self.matrix = np.zeros((num_classes, num_classes), dtype=np.int64)

    def update(self, prediction: Any, target: Any) -> None:
        """Add a batch (or a single map) of predicted and true labels."""
        self.matrix += confusion_matrix(prediction, target, self.num_classes)

    def compute(self) -> dict[str, Any]:
        """``{"miou", "pixel_accuracy", "per_class_iou": {name: iou or NaN}}``."""
        ious = iou_per_class(self.matrix)
        return {
            "miou": mean_iou(self.matrix),
            "pixel_accuracy": pixel_accuracy(self.matrix),
            "per_class_iou": {name: float(iou) for name, iou in zip(self.class_names, ious, strict=True)},
        }
