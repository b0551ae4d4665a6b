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

import logging
import math
import time
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
from models.detector.inference import score_images
from models.detector.loss import ReverseDistillationLoss
from models.detector.map_weights_fit import fit_fusion_weights
from models.detector.network import ReverseDistillation
from models.detector.recipes import DetectorRecipe, training_recipe
from models.divergence_guard import DivergenceGuard, TrainingDivergedError
from models.training_run import EpochCallback, EpochHistory, TimeBudget, seed_everything

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


def _batches(images: torch.Tensor, batch_size: int, device: torch.device) -> Any:
    for start in range(0, len(images), batch_size):
        yield uint8_to_input(images[start : start + batch_size]).to(device)


@torch.no_grad()
def _mean_loss(model: ReverseDistillation, images: torch.Tensor, batch_size: int, device: torch.device) -> float:
    model.eval()
    criterion = ReverseDistillationLoss()
    total = 0.0
    for batch in _batches(images, batch_size, device):
        teacher_features, student_features = model(batch)
        total += float(criterion(teacher_features, student_features)) * len(batch)
    return total / max(len(images), 1)


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
    config = DetectorConfig.from_dict(config) if isinstance(config, dict) else config
    recipe = (recipe or training_recipe(config.backbone)).with_overrides(**settings)
    device = torch.device(device)
    if recipe.batch_size < 2:
        raise ValueError(f"batch_size must be at least 2 (BatchNorm in the student), got {recipe.batch_size}")
    seed_everything(seed)
    index = scan_mvtec(data_dir, need_train=True)
    train_paths, val_paths = split_train_val(index.train, recipe.val_fraction, seed)
    if len(train_paths) < 2:
        raise ValueError(f"need at least 2 training images after the validation split, got {len(train_paths)}")
    logger.info("detector training: %d train, %d validation images", len(train_paths), len(val_paths))
    train_images = load_images_uint8(train_paths, config.image_size)
    val_images = load_images_uint8(val_paths, config.image_size)

    model = build_detector(config).to(device)
    if config.recalibrate_teacher_batchnorm:
        model.teacher.recalibrate_batchnorm(_batches(train_images, recipe.batch_size, device))
    if config.feature_standardisation:
        model.teacher.fit_standardisation(_batches(train_images, recipe.batch_size, device))

    distill_start = time.perf_counter()
    budget = TimeBudget(max_minutes)
    history, stopped_by_time, guard = _distil(model, train_images, val_images, recipe, seed, budget, on_epoch)
    distill_seconds = time.perf_counter() - distill_start
    model.eval()

    fusion_start = time.perf_counter()
    fusion: dict[str, Any] = {"fitted": False, "weights": model.anomaly_map_generator.fusion_weights}
    if fit_fusion and config.fusion_weights is None:
        fit = fit_fusion_weights(
            model, train_images, n_images=recipe.fusion_images, batch_size=recipe.batch_size, seed=seed
        )
        fusion = {"fitted": True, **fit.to_dict()}
    fusion_seconds = time.perf_counter() - fusion_start

    calibration_start = time.perf_counter()
    if not len(val_images):
        logger.warning("no held-out normal images (val_fraction=0): calibrating on training images, optimistic")
    calibration = _calibrate(model, val_images if len(val_images) else train_images, labelled_dir, recipe, guard)
    calibration_seconds = time.perf_counter() - calibration_start

    return DetectorTrainResult(
        model=model,
        config=config,
        calibration=calibration,
        history=history,
        train_names=[p.name for p in train_paths],
        val_names=[p.name for p in val_paths],
        epochs_completed=len(history),
        stopped_by_time=stopped_by_time,
        fusion=fusion,
        seconds={
            "distillation": distill_seconds,
            "fusion": fusion_seconds,
            "calibration": calibration_seconds,
            "total": time.perf_counter() - total_start,
        },
        divergence=guard.summary(),
        weights_info=model.weights_info,
        seed=seed,
        hyperparameters={
            **recipe.training_settings(),
            "betas": list(recipe.betas),
            "recipe_family": recipe.family,
            "max_minutes": max_minutes,
            "fit_fusion": fit_fusion,
            "labelled_dir": str(labelled_dir) if labelled_dir is not None else None,
        },
    )


def _distil(
    model: ReverseDistillation,
    train_images: torch.Tensor,
    val_images: torch.Tensor,
    recipe: DetectorRecipe,
    seed: int,
    budget: TimeBudget,
    on_epoch: EpochCallback | None,
) -> tuple[list[dict[str, Any]], bool, DivergenceGuard]:
    """The distillation phase: bottleneck and student learn the teacher's features under the cosine loss.

    Returns:
        The epoch history, whether the budget ended it, and the divergence guard (its record and last finite
        weights). The model ends on finite weights, or :class:`TrainingDivergedError` is raised.
    """
    device = next(model.parameters()).device
    batch_size = recipe.batch_size
    optimiser = torch.optim.Adam(model.trainable_parameters(), lr=recipe.lr, betas=recipe.betas)
    criterion = ReverseDistillationLoss()
    generator = torch.Generator().manual_seed(seed)
    guard = DivergenceGuard([model.bottleneck, model.student], optimiser)
    history = EpochHistory(logger, budget, on_epoch)
    stopped_by_time = False
    for epoch in range(1, recipe.epochs + 1):
        epoch_start = time.monotonic()
        model.train()
        order = torch.randperm(len(train_images), generator=generator)
        running, seen = 0.0, 0
        for start in range(0, len(order), batch_size):
            ids = order[start : start + batch_size]
            if len(ids) < 2:  # BatchNorm cannot train on a single image
                continue
            teacher_features, student_features = model(uint8_to_input(train_images[ids]).to(device))
            loss = criterion(teacher_features, student_features)
            features = {"teacher features": teacher_features, "student features": student_features}
            if not guard.step_is_finite(loss, epoch, start // batch_size, features):
                if guard.stopped:
                    break
                continue
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            running += float(loss.detach()) * len(ids)
            seen += len(ids)
            if budget.exceeded():
                stopped_by_time = True
                break
        measured: dict[str, Any] = {"loss": running / max(seen, 1)}
        if len(val_images):
            measured["val_loss"] = _mean_loss(model, val_images, batch_size, device)
        if guard.events and guard.events[-1]["epoch"] == epoch:
            measured["nonfinite_steps"] = sum(1 for event in guard.events if event["epoch"] == epoch)
        if seen and math.isfinite(measured["loss"]) and math.isfinite(measured.get("val_loss", 0.0)):
            guard.keep(after_epoch=True)
        history.add(epoch, epoch_start, measured)
        if stopped_by_time:
            logger.info("detector training stopped: %s", budget.stop_reason(epoch))
            break
        if guard.stopped:
            logger.warning("detector training stopped at epoch %d on the last finite weights (diverged)", epoch)
            break
    check_images = val_images if len(val_images) else train_images[:batch_size]
    if not math.isfinite(_mean_loss(model, check_images, batch_size, device)):
        guard.restore_after_training(len(history))
        if not math.isfinite(_mean_loss(model, check_images, batch_size, device)):
            raise TrainingDivergedError(
                f"the detector gives non-finite outputs even on its last finite weights ({guard.summary()}); it "
                "is not registered. Retrain with a lower learning rate (--lr)."
            )
    return history.entries, stopped_by_time, guard


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
