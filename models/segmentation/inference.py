"""Predict label maps for camera frames, and evaluate a segmenter on a labelled folder.

Frames are predicted at low resolution (long side ``long_side``, by default the model's
``config.input_long_side``); :mod:`models.cropping` maps the small label map back to full-resolution
coordinates exactly, so there is no need to upsample logits to the camera resolution.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from models.metrics.segmentation import SegmentationMeter
from models.segmentation.data import SegmentationFolder
from models.segmentation.preprocessing import pad_collate, preprocess_image


def _resolve_device(model: nn.Module, device: str | torch.device | None) -> torch.device:
    if device is None:
        return next(model.parameters()).device
    return torch.device(device)


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _default_long_side(model: nn.Module, long_side: int | None) -> int:
    if long_side is not None:
        return int(long_side)
    config = getattr(model, "config", None)
    if config is None:
        raise ValueError("pass long_side: the model has no .config with input_long_side")
    return int(config.input_long_side)


@torch.no_grad()
def predict_masks(
    model: nn.Module,
    images: Sequence[np.ndarray],
    long_side: int | None = None,
    device: str | torch.device | None = None,
    batch_size: int = 4,
) -> list[np.ndarray]:
    """Label maps for a list of frames.

    Each frame is converted with :func:`~models.segmentation.preprocessing.preprocess_image` (uint8 / 255,
    uint16 / 65535, grey to RGB, long side resized to ``long_side``, ImageNet normalisation). Frames whose
    resized sizes are equal are batched together, so a frame's prediction does not depend on its neighbours.

    Args:
        model: A segmenter (e.g. from :func:`~models.packaging.load_model_package`). It is put in eval mode
            for the call and moved to ``device`` when one is given (it stays there).
        images: ``(H, W, 3)`` or ``(H, W)`` uint8 / uint16 arrays.
        long_side: Inference long side; default ``model.config.input_long_side``.
        device: Where to run; default the model's device.
        batch_size: Frames per forward pass.

    Returns:
        One ``(h, w)`` uint8 label map per frame, ``max(h, w) == long_side``, aspect ratio kept.
    """
    long_side = _default_long_side(model, long_side)
    target = _resolve_device(model, device)
    model.to(target)
    was_training = model.training
    model.eval()
    try:
        inputs = [preprocess_image(image, long_side) for image in images]
        by_size: dict[tuple[int, int], list[int]] = {}
        for index, tensor in enumerate(inputs):
            by_size.setdefault((tensor.shape[-2], tensor.shape[-1]), []).append(index)
        results: list[np.ndarray | None] = [None] * len(inputs)
        for (height, width), indices in by_size.items():
            for start in range(0, len(indices), batch_size):
                chunk = indices[start : start + batch_size]
                batch = torch.stack([inputs[i] for i in chunk]).to(target)
                labels = model(batch).argmax(dim=1).to(torch.uint8).cpu().numpy()
                for i, label_map in zip(chunk, labels, strict=True):
                    results[i] = label_map[:height, :width]
        return [r for r in results if r is not None]
    finally:
        model.train(was_training)


def predict_mask(
    model: nn.Module,
    image: np.ndarray,
    long_side: int | None = None,
    device: str | torch.device | None = None,
) -> np.ndarray:
    """Label map of one frame; see :func:`predict_masks`.

    Returns:
        ``(h, w)`` uint8 labels with ``max(h, w) == long_side``.
    """
    return predict_masks(model, [image], long_side=long_side, device=device, batch_size=1)[0]


@torch.no_grad()
def evaluate_segmenter(
    model: nn.Module,
    dataset: str | Path | SegmentationFolder,
    image_size: int | None = None,
    device: str | torch.device | None = None,
    batch_size: int = 1,
) -> dict[str, Any]:
    """mIoU, per-class IoU, pixel accuracy and speed on a labelled set.

    Scores are computed at the evaluation resolution (the dataset's ``image_size``), where both prediction and
    nearest-resized mask live; this is also the resolution the crop boxes are derived from.

    Args:
        model: The segmenter; put in eval mode for the call, moved to ``device`` when given.
        dataset: A dataset directory (``images/``, ``masks/``) or a ready :class:`SegmentationFolder` (which
            must not augment).
        image_size: Long side for a directory; default ``model.config.input_long_side``. Ignored for a
            dataset object, which has its own.
        device: Where to run; default the model's device.
        batch_size: Frames per forward pass; ``ms_per_image`` is most meaningful with 1.

    Returns:
        ``{"miou", "per_class_iou" ({class name: IoU, NaN if absent}), "pixel_accuracy", "ms_per_image"
        (forward + argmax, excluding file reading), "images", "image_size"}``.
    """
    config = getattr(model, "config", None)
    num_classes = int(config.num_classes) if config is not None else int(model.num_classes)
    if not isinstance(dataset, SegmentationFolder):
        dataset = SegmentationFolder(
            dataset, _default_long_side(model, image_size), augment=None, num_classes=num_classes
        )
    elif dataset.augment is not None:
        raise ValueError("evaluate on a SegmentationFolder built with augment=None")
    target = _resolve_device(model, device)
    model.to(target)
    was_training = model.training
    model.eval()
    meter = SegmentationMeter(num_classes, getattr(config, "class_names", None))
    seconds = 0.0
    try:
        loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=pad_collate)
        for images, masks in loader:
            images = images.to(target)
            _synchronize(target)
            start = time.perf_counter()
            labels = model(images).argmax(dim=1)
            _synchronize(target)
            seconds += time.perf_counter() - start
            meter.update(labels, masks)
    finally:
        model.train(was_training)
    scores = meter.compute()
    return {
        "miou": scores["miou"],
        "per_class_iou": scores["per_class_iou"],
        "pixel_accuracy": scores["pixel_accuracy"],
        "ms_per_image": 1000.0 * seconds / max(len(dataset), 1),
        "images": len(dataset),
        "image_size": dataset.image_size,
    }
