"""Turning crops into network input and scoring batches.

The scoring pipeline hands over component crops as numpy arrays straight from the camera (uint8 or uint16, grey
``(H, W)`` or colour ``(H, W, 3)``); :func:`preprocess_crops` makes the normalised ``(N, 3, S, S)`` batch the
detector was trained on (same resize and normalisation as :mod:`models.detector.data`), and
:func:`score_images` / :func:`score_crops` run the detector in inference mode.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from models.detector.calibration import Calibration
from models.detector.data import array_to_tensor
from models.imaging import imagenet_normalise, to_rgb, to_unit_float
from models.model_kinds import INFERENCE_MEMORY_FORMAT, AnomalyDetector


def preprocess_crop(crop: np.ndarray, image_size: int) -> torch.Tensor:
    """One crop (uint8/uint16/float in [0, 1]; ``(H, W)``, ``(H, W, 1)``, ``(H, W, 3)`` or ``(H, W, 4)``) →
    ImageNet-normalised ``(3, image_size, image_size)`` float tensor."""
    array = to_rgb(to_unit_float(np.asarray(crop)))
    return imagenet_normalise(array_to_tensor(array, image_size))


def preprocess_crops(crops: Sequence[np.ndarray], image_size: int) -> torch.Tensor:
    """Several crops of any sizes → ``(N, 3, image_size, image_size)`` batch."""
    if len(crops) == 0:
        raise ValueError("no crops to preprocess")
    return torch.stack([preprocess_crop(crop, image_size) for crop in crops])


def _placement(model: nn.Module) -> tuple[torch.device, torch.memory_format]:
    """Where and in which layout a batch goes: a torch network's device, channels-last (its convolutions' fast
    layout on CPU and GPU alike, whichever layout its weights are in); a detector without parameters (ONNX
    Runtime's) takes plain contiguous CPU arrays."""
    parameter = next(model.parameters(), None)
    if parameter is None:
        return torch.device("cpu"), torch.contiguous_format
    return parameter.device, INFERENCE_MEMORY_FORMAT


@torch.inference_mode()
def score_images(
    model: AnomalyDetector,
    images: torch.Tensor,
    batch_size: int | None = None,
    autocast: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Anomaly maps and raw image scores of a preprocessed batch.

    Args:
        model: The detector (put in eval mode here; stays on its device).
        images: ``(N, 3, S, S)`` from :func:`preprocess_crops` or the data loaders, on any device.
        batch_size: Split into chunks of this size (``None``: one pass).
        autocast: bfloat16 autocast on CUDA (maps are returned as float32 anyway).

    Returns:
        ``(maps, scores)``: ``float32`` arrays ``(N, S, S)`` and ``(N,)``.
    """
    model.eval()
    device, layout = _placement(model)
    step = batch_size or max(len(images), 1)
    maps: list[np.ndarray] = []
    scores: list[np.ndarray] = []
    for start in range(0, len(images), step):
        batch = images[start : start + step].to(device, non_blocking=True, memory_format=layout)
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=autocast and device.type == "cuda"):
            batch_maps, batch_scores = model.score(batch)
        maps.append(batch_maps[:, 0].float().cpu().numpy())
        scores.append(batch_scores.float().cpu().numpy())
    return np.concatenate(maps).astype(np.float32), np.concatenate(scores).astype(np.float32)


def resize_map(anomaly_map: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of one ``(S, S)`` map to a crop's ``(H, W)`` (for overlays on the original crop)."""
    tensor = torch.from_numpy(np.ascontiguousarray(anomaly_map, dtype=np.float32))[None, None]
    return F.interpolate(tensor, size=shape, mode="bilinear", align_corners=False)[0, 0].numpy()


@dataclass
class CropScores:
    """Scores of a batch of crops.

    Attributes:
        raw_scores: Raw image scores ``(N,)``.
        raw_maps: Raw anomaly maps at network resolution ``(N, S, S)``.
        scores: Normalised image scores in [0, 1] (0.5 = threshold), or ``None`` without calibration.
        maps: Normalised maps, or ``None`` without calibration.
        anomalous: Decisions ``(N,)`` (``score >= 0.5``), or ``None`` without calibration.
    """

    raw_scores: np.ndarray
    raw_maps: np.ndarray
    scores: np.ndarray | None = None
    maps: np.ndarray | None = None
    anomalous: np.ndarray | None = None


def score_crops(
    model: AnomalyDetector,
    crops: Sequence[np.ndarray],
    calibration: Calibration | None = None,
    batch_size: int = 16,
    autocast: bool = False,
) -> CropScores:
    """Preprocess and score crops in batches; normalise and decide when a calibration is given.

    Args:
        model: The detector, on the device to use.
        crops: Numpy crops of any size (see :func:`preprocess_crop`).
        calibration: From the model package (``extra["calibration"]``).
        batch_size: Crops per forward pass.
        autocast: bfloat16 autocast on CUDA.
    """
    image_size = model.input_size
    raw_maps: list[np.ndarray] = []
    raw_scores: list[np.ndarray] = []
    for start in range(0, len(crops), batch_size):
        batch = preprocess_crops(crops[start : start + batch_size], image_size)
        maps, scores = score_images(model, batch, autocast=autocast)
        raw_maps.append(maps)
        raw_scores.append(scores)
    result = CropScores(raw_scores=np.concatenate(raw_scores), raw_maps=np.concatenate(raw_maps))
    if calibration is not None:
        result.scores = np.asarray(calibration.normalise_image(result.raw_scores), dtype=np.float32)
        result.maps = np.asarray(calibration.normalise_pixels(result.raw_maps), dtype=np.float32)
        result.anomalous = result.raw_scores >= calibration.image_threshold
    return result
