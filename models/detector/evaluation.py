"""Evaluating a trained detector on an MVTec-layout test set.

Maps are compared with the masks at the network resolution (``config.image_size``), as anomalib does; metrics
come from :mod:`models.metrics.anomaly`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from models.detector.calibration import Calibration
from models.detector.data import GOOD, load_image, load_mask, scan_mvtec
from models.detector.inference import score_images
from models.imaging import imagenet_normalise
from models.metrics.anomaly import (
    SortedScores,
    aupro,
    auroc,
    downsample_curve,
    f1_max,
    precision_recall_curve,
    roc_curve,
)
from models.model_kinds import AnomalyDetector

#: AUPRO integration limit (MVTec AD's convention).
DEFAULT_FPR_LIMIT = 0.3


def _pixel_metrics(masks: np.ndarray, maps: np.ndarray, fpr_limit: float) -> dict[str, float]:
    ranked = SortedScores.of(maps)
    return {
        "pixel_auroc": auroc(masks, ranked),
        "pixel_f1_max": f1_max(masks, ranked).f1,
        "aupro": aupro(masks, maps, fpr_limit, ranked),
    }


@dataclass
class TestSet:
    """An MVTec-layout ``test/`` split loaded at one network resolution.

    Attributes:
        index: The scanned folder.
        samples: One entry per test image.
        images: ImageNet-normalised images ``(N, 3, S, S)``.
        masks: Defect masks ``(N, S, S)`` (all false for good images).
        labels: Whether each image is defective.
        defects: Defect type of each image (``"good"`` for good ones).
    """

    index: Any
    samples: list[Any]
    images: torch.Tensor
    masks: np.ndarray
    labels: np.ndarray
    defects: np.ndarray


def load_test_set(data_dir: str | Path, image_size: int) -> TestSet:
    """Read ``data_dir/test`` and its masks at ``image_size`` (masks nearest neighbour, thresholded at 0.5)."""
    index = scan_mvtec(data_dir, need_train=False, need_test=True)
    samples = index.test
    images = torch.stack([imagenet_normalise(load_image(s.path, image_size)) for s in samples])
    masks = np.stack(
        [
            load_mask(s.mask_path, image_size)[0].numpy() > 0.5
            if s.mask_path is not None
            else np.zeros((image_size, image_size), dtype=bool)
            for s in samples
        ]
    )
    labels = np.array([s.label for s in samples], dtype=bool)
    defects = np.array([s.defect for s in samples])
    return TestSet(index, samples, images, masks, labels, defects)


def headline_metrics(labels: np.ndarray, scores: np.ndarray, masks: np.ndarray, maps: np.ndarray) -> dict[str, float]:
    """Image AUROC, image F1-max, pixel AUROC, pixel F1-max and AUPRO (FPR <= 0.3) of one set of maps."""
    return {
        "image_auroc": auroc(labels, scores),
        "image_f1_max": f1_max(labels, scores).f1,
        **_pixel_metrics(masks, maps, DEFAULT_FPR_LIMIT),
    }


def evaluate_detector(
    model: AnomalyDetector,
    calibration: Calibration | None,
    data_dir: str | Path,
    device: str | torch.device = "cpu",
    worst_k: int = 5,
    batch_size: int = 16,
    fpr_limit: float = DEFAULT_FPR_LIMIT,
    max_curve_points: int = 512,
) -> dict[str, Any]:
    """Image and pixel metrics of ``model`` on ``data_dir/test``.

    Args:
        model: The detector.
        calibration: Thresholds for the decision metrics (``None`` skips them).
        data_dir: MVTec-layout folder with ``test/`` and ``ground_truth/``.
        device: Where to run the model.
        worst_k: How many worst cases to name per kind (missed defects, false alarms).
        batch_size: Images per forward pass.
        fpr_limit: AUPRO integration limit.
        max_curve_points: Points kept per curve.

    Returns:
        ``image_auroc``, ``pixel_auroc``, ``aupro``, ``image_f1_max``, ``pixel_f1_max``, ``per_defect``
        (defect → same metrics against the good images, plus ``count``), ``ms_per_image`` (forward pass only),
        ``n_images``, ``worst_cases`` (``missed_defects`` and ``false_alarms``: names, raw and normalised
        scores), ``at_threshold`` (confusion counts, precision, recall, F1 at the calibrated image threshold),
        ``curves`` (``image_roc``, ``image_pr``, ``pixel_roc``, ``pixel_pr``), ``per_image`` (name, defect,
        score).
    """
    image_size = model.input_size
    model = model.to(device)
    test = load_test_set(data_dir, image_size)
    maps, scores, ms_per_image = _timed_scores(model, test.images, batch_size, device)
    results: dict[str, Any] = {
        "image_auroc": auroc(test.labels, scores),
        "image_f1_max": f1_max(test.labels, scores).f1,
        **_pixel_metrics(test.masks, maps, fpr_limit),
        "ms_per_image": ms_per_image,
        "n_images": len(test.samples),
        "n_defective": int(test.labels.sum()),
        "image_size": image_size,
        "per_defect": _per_defect(test, scores, maps, fpr_limit),
    }
    normalised = calibration.normalise_image(scores) if calibration else scores
    results["worst_cases"] = _worst_cases(test, scores, normalised, worst_k)
    if calibration is not None:
        results["at_threshold"] = _at_threshold(test, scores, maps, calibration)
    results["curves"] = _curves(test, scores, maps, max_curve_points)
    results["per_image"] = [
        {"name": s.name, "defect": str(test.defects[i]), "raw_score": float(scores[i]), "score": float(normalised[i])}
        for i, s in enumerate(test.samples)
    ]
    return results


def _timed_scores(
    model: AnomalyDetector, images: torch.Tensor, batch_size: int, device: str | torch.device
) -> tuple[np.ndarray, np.ndarray, float]:
    """Maps, raw scores and milliseconds per image of the forward passes alone."""
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()
    start = time.perf_counter()
    maps, scores = score_images(model, images, batch_size=batch_size)
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()
    return maps, scores, 1000.0 * (time.perf_counter() - start) / max(len(images), 1)


def _per_defect(test: TestSet, scores: np.ndarray, maps: np.ndarray, fpr_limit: float) -> dict[str, dict[str, float]]:
    """Each defect type against the good images: count, image and pixel metrics."""
    per_defect: dict[str, dict[str, float]] = {}
    good = test.defects == GOOD
    for defect in test.index.defect_types:
        chosen = good | (test.defects == defect)
        per_defect[defect] = {
            "count": int((test.defects == defect).sum()),
            "image_auroc": auroc(test.labels[chosen], scores[chosen]),
            "image_f1_max": f1_max(test.labels[chosen], scores[chosen]).f1,
            **_pixel_metrics(test.masks[chosen], maps[chosen], fpr_limit),
        }
    return per_defect


def _worst_cases(test: TestSet, scores: np.ndarray, normalised: np.ndarray, worst_k: int) -> dict[str, list]:
    """The lowest-scored defects and the highest-scored good images, by name."""
    labels = test.labels
    defective_ids, good_ids = np.flatnonzero(labels), np.flatnonzero(~labels)
    missed = defective_ids[np.argsort(scores[defective_ids])][:worst_k]
    alarms = good_ids[np.argsort(-scores[good_ids])][:worst_k]

    def named(ids: np.ndarray) -> list[dict[str, Any]]:
        return [
            {"name": test.samples[i].name, "raw_score": float(scores[i]), "score": float(normalised[i])} for i in ids
        ]

    return {"missed_defects": named(missed), "false_alarms": named(alarms)}


def _at_threshold(test: TestSet, scores: np.ndarray, maps: np.ndarray, calibration: Calibration) -> dict[str, Any]:
    """Confusion counts, precision, recall and F1 at the calibrated image threshold; pixel F1 at the pixel one."""
    labels, masks = test.labels, test.masks
    predicted = scores >= calibration.image_threshold
    tp, fp = int((predicted & labels).sum()), int((predicted & ~labels).sum())
    fn, tn = int((~predicted & labels).sum()), int((~predicted & ~labels).sum())
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    pixel_predicted = maps >= calibration.pixel_threshold
    pixel_tp = float((pixel_predicted & masks).sum())
    return {
        "image_threshold": calibration.image_threshold,
        "pixel_threshold": calibration.pixel_threshold,
        "method": calibration.method,
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "tn": tn,
        "precision": precision,
        "recall": recall,
        "f1": 2 * precision * recall / (precision + recall) if precision + recall else 0.0,
        "accuracy": (tp + tn) / len(labels),
        "pixel_f1": 2 * pixel_tp / max(float(pixel_predicted.sum() + masks.sum()), 1.0),
    }


def _curves(test: TestSet, scores: np.ndarray, maps: np.ndarray, max_points: int) -> dict[str, dict[str, list]]:
    """Image and pixel ROC and precision-recall curves, each downsampled to ``max_points``."""
    fpr, tpr, _ = roc_curve(test.labels, scores)
    precision, recall, _ = precision_recall_curve(test.labels, scores)
    ranked = SortedScores.of(maps)
    pixel_fpr, pixel_tpr, _ = roc_curve(test.masks, ranked)
    pixel_precision, pixel_recall, _ = precision_recall_curve(test.masks, ranked)
    curves = {}
    for key, (x, y, x_name, y_name) in {
        "image_roc": (fpr, tpr, "fpr", "tpr"),
        "image_pr": (recall, precision, "recall", "precision"),
        "pixel_roc": (pixel_fpr, pixel_tpr, "fpr", "tpr"),
        "pixel_pr": (pixel_recall, pixel_precision, "recall", "precision"),
    }.items():
        xs, ys = downsample_curve(x, y, max_points)
        curves[key] = {x_name: xs, y_name: ys}
    return curves
