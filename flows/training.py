"""Flows ``train_segmenter`` and ``train_detector``: one training task each, logged to MLflow and registered.

Training runs where the flow runs (a GPU worker of the Prefect pool when there is one), not fanned out.
"""

from __future__ import annotations

from pathlib import Path

from prefect import flow

from flows.results import DetectorTrainingResult, SegmenterTrainingResult
from models.detector.recipes import RECOMMENDED_BACKBONE
from models.errors import DefectflowError
from models.segmentation.recipes import DEFAULT_BACKBONE as SEGMENTER_BACKBONE
from models.weight_sources import PRETRAINED
from storage.settings import load_settings
from tasks.train_detector import train_detector_task
from tasks.train_segmenter import train_segmenter_task


class DataError(DefectflowError, ValueError):
    """A training or evaluation folder that is missing or laid out wrongly."""


def require_dir(path: str | Path, expected: list[str], what: str) -> Path:
    """``path`` as an absolute folder that holds ``expected`` subfolders, or a :class:`DataError` saying what is off."""
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise DataError(f"{what} folder {folder} does not exist")
    missing = [name for name in expected if not (folder / name).is_dir()]
    if missing:
        raise DataError(
            f"{what} folder {folder} lacks {', '.join(missing)}/; expected layout: "
            + ", ".join(f"{name}/" for name in expected)
        )
    return folder.resolve()


@flow(name="train_segmenter", log_prints=True)
def train_segmenter_flow(
    data: str,
    home: str | None = None,
    backbone: str = SEGMENTER_BACKBONE,
    image_size: int | None = None,
    epochs: int | None = None,
    batch_size: int | None = None,
    label_fraction: float = 1.0,
    seed: int = 0,
    encoder_weights: str = PRETRAINED,
    max_minutes: float | None = None,
) -> SegmenterTrainingResult:
    """Train the AMAM U-Net on ``data`` (``images/``, ``masks/``) and register it as ``segmenter@challenger``."""
    folder = require_dir(data, ["images", "masks"], "segmentation")
    settings = load_settings(home).ensure()
    trained = train_segmenter_task(
        str(settings.home),
        str(folder),
        backbone=backbone,
        image_size=image_size,
        epochs=epochs,
        batch_size=batch_size,
        label_fraction=label_fraction,
        seed=seed,
        encoder_weights=encoder_weights,
        max_minutes=max_minutes,
    )
    return SegmenterTrainingResult(**trained)


@flow(name="train_detector", log_prints=True)
def train_detector_flow(
    data: str,
    home: str | None = None,
    backbone: str = RECOMMENDED_BACKBONE,
    image_size: int | None = None,
    epochs: int | None = None,
    batch_size: int | None = None,
    seed: int = 0,
    teacher_weights: str = PRETRAINED,
    max_minutes: float | None = None,
    lr: float | None = None,
) -> DetectorTrainingResult:
    """Train the reverse-distillation detector on ``data/train/good`` and register it as ``detector@challenger``.

    Settings left ``None`` come from the backbone family's recipe (:mod:`models.detector.recipes`).
    """
    folder = require_dir(data, ["train/good"], "MVTec-layout")
    settings = load_settings(home).ensure()
    trained = train_detector_task(
        str(settings.home),
        str(folder),
        backbone=backbone,
        image_size=image_size,
        epochs=epochs,
        batch_size=batch_size,
        seed=seed,
        teacher_weights=teacher_weights,
        max_minutes=max_minutes,
        lr=lr,
    )
    return DetectorTrainingResult(**trained)
