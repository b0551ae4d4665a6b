"""Saving and loading a trained detector with its calibration through :mod:`models.packaging`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from models.detector.builder import DETECTOR_KIND, detector_builder
from models.detector.calibration import Calibration
from models.detector.network import ReverseDistillation
from models.packaging import ModelPackage, load_model_package, read_model_package, repackage, save_model_package


def save_detector(
    directory: str | Path,
    model: ReverseDistillation,
    calibration: Calibration | None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write ``model`` (config, weights) and ``calibration`` (as ``extra["calibration"]``) to ``directory``.

    Args:
        directory: Target folder (created when missing).
        model: The trained detector.
        calibration: Its calibration (``None`` leaves it out; scoring then has no thresholds).
        extra: More JSON-ready data to store, e.g. ``DetectorTrainResult.package_extra()`` (whose calibration
            entry is overridden by ``calibration`` when both are given).
    """
    payload = dict(extra or {})
    if calibration is not None:
        payload["calibration"] = calibration.to_dict()
    return save_model_package(directory, DETECTOR_KIND, model.config.to_dict(), model, payload)


def load_detector(directory: str | Path) -> tuple[ReverseDistillation, Calibration | None, ModelPackage]:
    """Rebuild a saved detector (eval mode, CPU) without fetching any pretrained weights.

    Returns:
        ``(model, calibration or None, package)``.
    """
    model, package = load_model_package(directory, {DETECTOR_KIND: detector_builder}, expected_kind=DETECTOR_KIND)
    assert isinstance(model, ReverseDistillation)
    raw = package.extra.get("calibration")
    return model, (Calibration.from_dict(raw) if raw is not None else None), package


def load_package(directory: str | Path) -> tuple[ReverseDistillation, Calibration | None, ModelPackage]:
    """:func:`load_detector` under the name :mod:`models.model_kinds` calls for every kind."""
    return load_detector(directory)


def read_calibration(directory: str | Path) -> Calibration:
    """The calibration of a saved detector, read without loading its weights.

    Raises:
        ValueError: The package holds no calibration.
    """
    raw = read_model_package(directory).extra.get("calibration")
    if raw is None:
        raise ValueError(
            f"{directory} holds a detector without calibration; retrain it with 'defectflow train detector'"
        )
    return Calibration.from_dict(raw)


def save_recalibrated(source: str | Path, target: str | Path, calibration: Calibration) -> Path:
    """Copy the detector in ``source`` to ``target`` with ``calibration``: same weights file, same digest."""
    extra = read_model_package(source).extra | {"calibration": calibration.to_dict()}
    return repackage(source, target, extra)
