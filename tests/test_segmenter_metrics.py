"""Segmentation metrics against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from models.metrics.segmentation import (
    SegmentationMeter,
    confusion_matrix,
    iou_per_class,
    mean_iou,
    pixel_accuracy,
)


def test_binary_case_by_hand() -> None:
    target = np.array([[0, 0, 1, 1], [0, 0, 1, 1]])
    prediction = np.array([[0, 1, 1, 1], [0, 0, 0, 1]])
    cm = confusion_matrix(prediction, target, 2)
    # rows: true class; columns: predicted class
    assert cm.tolist() == [[3, 1], [1, 3]]
    # class 0: TP 3, FP 1, FN 1 -> 3/5; class 1 likewise
    assert iou_per_class(cm).tolist() == pytest.approx([0.6, 0.6])
    assert mean_iou(cm) == pytest.approx(0.6)
    assert pixel_accuracy(cm) == pytest.approx(6 / 8)


def test_three_classes_with_an_absent_class() -> None:
    target = np.array([0, 0, 0, 1, 1, 1])
    prediction = np.array([0, 0, 1, 1, 1, 0])
    cm = confusion_matrix(prediction, target, 3)
    ious = iou_per_class(cm)
    # class 0: TP 2, FP 1 (last), FN 1 -> 2/4; class 1: TP 2, FP 1, FN 1 -> 2/4; class 2 absent -> NaN
    assert ious[:2].tolist() == pytest.approx([0.5, 0.5])
    assert math.isnan(ious[2])
    assert mean_iou(cm) == pytest.approx(0.5)  # the absent class does not drag the mean to 1/3


def test_class_predicted_but_not_in_target_counts_as_zero() -> None:
    target = np.array([0, 0, 0, 0])
    prediction = np.array([0, 0, 0, 2])
    cm = confusion_matrix(prediction, target, 3)
    ious = iou_per_class(cm)
    assert ious[0] == pytest.approx(3 / 4)
    assert math.isnan(ious[1])
    assert ious[2] == 0.0
    assert mean_iou(cm) == pytest.approx((0.75 + 0.0) / 2)


def test_ignored_targets_and_torch_inputs() -> None:
    target = torch.tensor([[0, 1, 255], [1, 255, 0]])
    prediction = torch.tensor([[0, 1, 1], [0, 0, 0]])
    cm = confusion_matrix(prediction, target, 2)
    assert cm.tolist() == [[2, 0], [1, 1]]
    assert pixel_accuracy(cm) == pytest.approx(3 / 4)


def test_meter_accumulates_and_names_classes() -> None:
    meter = SegmentationMeter(2, ["background", "component"])
    meter.update(np.array([0, 1]), np.array([0, 1]))
    meter.update(np.array([1, 1]), np.array([0, 1]))
    scores = meter.compute()
    # totals: bg TP1 FP0 FN1 -> 1/2; comp TP2 FP1 FN0 -> 2/3
    assert scores["per_class_iou"] == pytest.approx({"background": 0.5, "component": 2 / 3})
    assert scores["miou"] == pytest.approx((0.5 + 2 / 3) / 2)
    assert scores["pixel_accuracy"] == pytest.approx(3 / 4)


def test_errors_and_empty() -> None:
    with pytest.raises(ValueError, match="shape"):
        confusion_matrix(np.zeros((2, 2)), np.zeros((2, 3)), 2)
    with pytest.raises(ValueError, match="class indices"):
        confusion_matrix(np.array([3]), np.array([0]), 2)
    empty = np.zeros((2, 2), dtype=np.int64)
    assert math.isnan(mean_iou(empty)) and math.isnan(pixel_accuracy(empty))
