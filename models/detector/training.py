"""Training the detector on normal images: distillation, fusion weights, calibration.

1. Split ``train/good`` into training and held-out validation images (deterministic from the seed).
2. With ``recalibrate_teacher_batchnorm`` re-estimate the teacher's BatchNorm statistics on the training images;
   with ``feature_standardisation`` measure the teacher's per-channel feature statistics on the training images.
3. Train bottleneck and student with Adam (RD4AD: lr 0.005, betas (0.5, 0.999), batch 16) on the cosine
   distillation loss, for ``epochs`` or until ``max_minutes`` have passed.
4. Fit the anomaly-map fusion weights on synthetic anomalies of the training images
   (:mod:`models.detector.map_weights_fit`).
5. Calibrate thresholds on the held-out normal images, F1-optimally when ``labelled_dir`` holds labelled defects.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from models.backbones import WeightsInfo
from models.detector.builder import build_detector
from models.detector.calibration import Calibration, calibrate
from models.detector.config import DetectorConfig
from models.detector.data import load_images_uint8, load_mask, scan_mvtec, split_train_val, uint8_to_input
from models.detector.distillation import distil, image_batches
from models.detector.inference import score_images
from models.detector.map_weights_fit import fit_fusion_weights
from models.detector.network import ReverseDistillation
from models.detector.recipes import DetectorRecipe, training_recipe
from models.divergence_guard import DivergenceGuard, TrainingDivergedError
from models.training_run import EpochCallback, TimeBudget, seed_everything

logger = logging.getLogger(__name__)


@dataclass
class DetectorTrainResult:
    """What :func:`train_detector` returns.

    Attributes:
        model: Trained detector in eval mode (on the training device).
        config: Its architecture.
        calibration: Thresholds and normalisation (save as ``extra["calibration"]``).
        history: One dict per epoch: ``epoch``, ``loss``, ``seconds``, ``val_loss`` (with a validation set).
        train_names: File names of the training images.
        val_names: File names of the held-out normal images.
        epochs_completed: Epochs actually run.
        stopped_by_time: Whether ``max_minutes`` ended training before ``epochs``.
        fusion: Summary of the fusion-weight fit.
        seconds: Wall time per phase (``distillation``, ``fusion``, ``calibration``, ``total``).
        weights_info: Where the teacher weights came from.
        seed: The seed.
        hyperparameters: The training settings, for the record.
        divergence: Non-finite steps met and what was done about them (:class:`DivergenceGuard`).
    """

    model: ReverseDistillation
    config: DetectorConfig
    calibration: Calibration
    history: list[dict[str, Any]]
    train_names: list[str]
    val_names: list[str]
    epochs_completed: int
    stopped_by_time: bool
    fusion: dict[str, Any]
    seconds: dict[str, float]
    weights_info: WeightsInfo
    seed: int
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    divergence: dict[str, Any] = field(default_factory=dict)

    def package_extra(self) -> dict[str, Any]:
        """``extra`` for :func:`models.packaging.save_model_package`: calibration plus a training summary."""
        return {
            "calibration": self.calibration.to_dict(),
            "training": {
                "epochs_completed": self.epochs_completed,
                "stopped_by_time": self.stopped_by_time,
                "final_loss": self.history[-1]["loss"] if self.history else None,
                "final_val_loss": self.history[-1].get("val_loss") if self.history else None,
                "seconds": self.seconds,
                "n_train": len(self.train_names),
                "n_val": len(self.val_names),
                "seed": self.seed,
                "hyperparameters": self.hyperparameters,
                "fusion": self.fusion,
                "divergence": self.divergence,
                "teacher_weights": {
                    "source": self.weights_info.source,
                    "detail": self.weights_info.detail,
                    "pretrained": self.weights_info.pretrained,
                },
            },
        }


def _labelled_set(data_dir: str | Path, image_size: int) -> tuple[torch.Tensor, np.ndarray]:
    index = scan_mvtec(data_dir, need_train=False, need_test=True)
    images = load_images_uint8([s.path for s in index.test], image_size)
    masks = np.stack(
        [
            load_mask(s.mask_path, image_size)[0].numpy() > 0.5
            if s.mask_path is not None
            else np.zeros((image_size, image_size), dtype=bool)
            for s in index.test
        ]
    )
    return images, masks


def train_detector(
    config: DetectorConfig | dict[str, Any],
    data_dir: str | Path,
    recipe: DetectorRecipe | None = None,
    *,
    seed: int = 0,
    max_minutes: float | None = None,
    device: str | torch.device = "cpu",
    on_epoch: EpochCallback | None = None,
    labelled_dir: str | Path | None = None,
    fit_fusion: bool = True,
    **settings: Any,
) -> DetectorTrainResult:
    """Train the reverse-distillation detector on ``data_dir/train/good`` and calibrate it.

    Args:
        config: Architecture (:class:`DetectorConfig` or its dict).
        data_dir: MVTec-layout folder; only ``train/good`` is read.
        recipe: Training settings (epochs, batch size, Adam lr and betas, validation share, fusion images);
            default: the recipe of ``config.backbone``'s family (:mod:`models.detector.recipes`).
        seed: Seeds the split, initialisation, batch order and anomaly synthesis.
        max_minutes: Wall-time budget of the distillation phase; training stops after the step that crosses it.
        device: ``"cpu"``, ``"cuda"``...
        on_epoch: Called after each epoch with the history entry (e.g. to log metrics to MLflow).
        labelled_dir: Optional MVTec-layout folder whose ``test/`` images (with ``ground_truth``) are used to set
            F1-optimal thresholds instead of the normal-only rule. Never the evaluation set.
        fit_fusion: Fit the fusion weights on synthetic anomalies (otherwise they stay equal); never done when
            ``config.fusion_weights`` fixes them.
        **settings: Any training setting of :class:`DetectorRecipe` to replace (``epochs=1``, ``lr=...``).

    Returns:
        The trained, calibrated model and a record of the run.
    """
    total_start = time.perf_counter()
    config, recipe, device = _resolve_run(config, recipe, device, settings)
    seed_everything(seed)
    data = _load_split(data_dir, config.image_size, recipe.val_fraction, seed)
    model = build_detector(config).to(device)
    _prepare_teacher(model, config, data.train_images, recipe.batch_size, device)
    fit = fit_fusion and config.fusion_weights is None
    phases = _run_phases(model, data, recipe, seed, TimeBudget(max_minutes), on_epoch, fit, labelled_dir)
    phases.seconds["total"] = time.perf_counter() - total_start
    return DetectorTrainResult(
        model=model,
        config=config,
        calibration=phases.calibration,
        history=phases.history,
        train_names=[p.name for p in data.train_paths],
        val_names=[p.name for p in data.val_paths],
        epochs_completed=len(phases.history),
        stopped_by_time=phases.stopped_by_time,
        fusion=phases.fusion,
        seconds=phases.seconds,
        divergence=phases.guard.summary(),
        weights_info=model.weights_info,
        seed=seed,
        hyperparameters=_hyperparameters(recipe, max_minutes, fit_fusion, labelled_dir),
    )


def _resolve_run(
    config: DetectorConfig | dict[str, Any],
    recipe: DetectorRecipe | None,
    device: str | torch.device,
    settings: dict[str, Any],
) -> tuple[DetectorConfig, DetectorRecipe, torch.device]:
    """Turn the caller's arguments into a config, the family's recipe with overrides, and a device.

    Raises:
        ValueError: For a batch size below 2 (the student's BatchNorm cannot train on one image).
    """
    config = DetectorConfig.from_dict(config) if isinstance(config, dict) else config
    recipe = (recipe or training_recipe(config.backbone)).with_overrides(**settings)
    device = torch.device(device)
    if recipe.batch_size < 2:
        raise ValueError(f"batch_size must be at least 2 (BatchNorm in the student), got {recipe.batch_size}")
    return config, recipe, device


@dataclass
class _Phases:
    """Outcome of the three training phases and their wall times."""

    history: list[dict[str, Any]]
    stopped_by_time: bool
    guard: DivergenceGuard
    fusion: dict[str, Any]
    calibration: Calibration
    seconds: dict[str, float]


def _run_phases(
    model: ReverseDistillation,
    data: _TrainingData,
    recipe: DetectorRecipe,
    seed: int,
    budget: TimeBudget,
    on_epoch: EpochCallback | None,
    fit_fusion: bool,
    labelled_dir: str | Path | None,
) -> _Phases:
    """Distil, fit the fusion weights (when ``fit_fusion``), then calibrate, timing each phase."""
    seconds: dict[str, float] = {}
    with _timed(seconds, "distillation"):
        history, stopped_by_time, guard = distil(
            model, data.train_images, data.val_images, recipe, seed, budget, on_epoch
        )
    model.eval()
    with _timed(seconds, "fusion"):
        fusion = _fit_fusion(model, data.train_images, recipe, seed, fit_fusion)
    with _timed(seconds, "calibration"):
        calibration = _calibrate(model, data.normal_images(), labelled_dir, recipe, guard)
    return _Phases(history, stopped_by_time, guard, fusion, calibration, seconds)


@dataclass
class _TrainingData:
    """The seeded train/validation split of ``train/good``: file paths and decoded uint8 images."""

    train_paths: list[Path]
    val_paths: list[Path]
    train_images: torch.Tensor
    val_images: torch.Tensor

    def normal_images(self) -> torch.Tensor:
        """Held-out normal images to calibrate on; the training images (with a warning) when none were held out."""
        if len(self.val_images):
            return self.val_images
        logger.warning("no held-out normal images (val_fraction=0): calibrating on training images, optimistic")
        return self.train_images


@contextlib.contextmanager
def _timed(seconds: dict[str, float], phase: str) -> Iterator[None]:
    """Record the wall time of the ``with`` block as ``seconds[phase]``, for the run's per-phase timing."""
    start = time.perf_counter()
    yield
    seconds[phase] = time.perf_counter() - start


def _load_split(data_dir: str | Path, image_size: int, val_fraction: float, seed: int) -> _TrainingData:
    """Split ``train/good`` deterministically from the seed and load both parts at the model's input size.

    Raises:
        ValueError: When fewer than two training images remain (the student's BatchNorm needs two).
    """
    index = scan_mvtec(data_dir, need_train=True)
    train_paths, val_paths = split_train_val(index.train, val_fraction, seed)
    if len(train_paths) < 2:
        raise ValueError(f"need at least 2 training images after the validation split, got {len(train_paths)}")
    logger.info("detector training: %d train, %d validation images", len(train_paths), len(val_paths))
    train_images = load_images_uint8(train_paths, image_size)
    val_images = load_images_uint8(val_paths, image_size)
    return _TrainingData(list(train_paths), list(val_paths), train_images, val_images)


def _prepare_teacher(
    model: ReverseDistillation,
    config: DetectorConfig,
    train_images: torch.Tensor,
    batch_size: int,
    device: torch.device,
) -> None:
    """Adapt the frozen teacher to the training images before distillation, as the config asks.

    Re-estimating BatchNorm statistics and/or measuring per-channel feature statistics both read the
    training images only, so the validation images stay unseen.
    """
    if config.recalibrate_teacher_batchnorm:
        model.teacher.recalibrate_batchnorm(image_batches(train_images, batch_size, device))
    if config.feature_standardisation:
        model.teacher.fit_standardisation(image_batches(train_images, batch_size, device))


def _fit_fusion(
    model: ReverseDistillation, train_images: torch.Tensor, recipe: DetectorRecipe, seed: int, fit: bool
) -> dict[str, Any]:
    """Fit the fusion weights on synthetic anomalies when ``fit``; otherwise record the fixed ones.

    Returns:
        The fusion record for the training summary (``fitted`` plus the weights and fit statistics).
    """
    if not fit:
        return {"fitted": False, "weights": model.anomaly_map_generator.fusion_weights}
    result = fit_fusion_weights(
        model, train_images, n_images=recipe.fusion_images, batch_size=recipe.batch_size, seed=seed
    )
    return {"fitted": True, **result.to_dict()}


def _hyperparameters(
    recipe: DetectorRecipe, max_minutes: float | None, fit_fusion: bool, labelled_dir: str | Path | None
) -> dict[str, Any]:
    """The run's training settings, JSON-ready, so the package records how the model was made."""
    return {
        **recipe.training_settings(),
        "betas": list(recipe.betas),
        "recipe_family": recipe.family,
        "max_minutes": max_minutes,
        "fit_fusion": fit_fusion,
        "labelled_dir": str(labelled_dir) if labelled_dir is not None else None,
    }


def _calibrate(
    model: ReverseDistillation,
    normal_images: torch.Tensor,
    labelled_dir: str | Path | None,
    recipe: DetectorRecipe,
    guard: DivergenceGuard,
) -> Calibration:
    """Thresholds from held-out normal images, F1-optimal where ``labelled_dir`` holds labelled defects."""
    batch_size = recipe.batch_size
    normal_maps, normal_scores = score_images(model, uint8_to_input(normal_images), batch_size=batch_size)
    if not (np.isfinite(normal_maps).all() and np.isfinite(normal_scores).all()):
        raise TrainingDivergedError(
            "the trained detector gives non-finite anomaly maps on normal images, so it is not calibrated or "
            f"registered (divergence record: {guard.summary()}). Retrain with a lower learning rate (--lr)."
        )
    if labelled_dir is None:
        return calibrate(normal_scores, normal_maps)
    image_size = model.config.image_size
    labelled_images, labelled_masks = _labelled_set(labelled_dir, image_size)
    labelled_maps, labelled_scores = score_images(model, uint8_to_input(labelled_images), batch_size=batch_size)
    return calibrate(normal_scores, normal_maps, labelled_scores, labelled_maps, labelled_masks)
