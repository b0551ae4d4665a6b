"""Task: train the detector, evaluate it where the data has a test split, log to MLflow, register as challenger."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from prefect import task

from models.detector.calibration import Calibration
from models.detector.config import DetectorConfig
from models.detector.package import save_detector
from models.detector.recipes import RECOMMENDED_BACKBONE, recipe_for
from models.detector.training import DetectorTrainResult, train_detector
from models.weight_sources import PRETRAINED
from storage.settings import Settings, load_settings
from storage.tracking import EXPERIMENT_TRAINING, log_artifact, log_artifacts, log_metrics, log_params, tracked_run
from tasks.backbone_weights import TEACHER, resolve_backbone_weights
from tasks.evaluate_models import detector_report_artifacts, has_test_split
from tasks.plots import line_plot
from tasks.publish_model import publish_model
from tasks.train_segmenter import training_device

DETECTOR_NAME = "detector"
HEADLINE = ("image_auroc", "pixel_auroc", "aupro", "image_f1_max", "pixel_f1_max", "ms_per_image")


def calibration_params(calibration: Calibration) -> dict[str, Any]:
    """Calibration as flat MLflow params: one param per threshold and per detail, not one stringified dict."""
    values = calibration.to_dict()
    details = values.pop("details", None) or {}
    return {**{f"calibration_{k}": v for k, v in values.items()}, **{f"calibration_{k}": v for k, v in details.items()}}


@task(name="train-detector")
def train_detector_task(
    home: str,
    data_dir: str,
    backbone: str = RECOMMENDED_BACKBONE,
    image_size: int | None = None,
    epochs: int | None = None,
    batch_size: int | None = None,
    seed: int = 0,
    teacher_weights: str = PRETRAINED,
    max_minutes: float | None = None,
    eval_dir: str | None = None,
    tags: dict[str, str] | None = None,
    config_overrides: dict[str, Any] | None = None,
    lr: float | None = None,
) -> dict[str, Any]:
    """Train on ``data_dir/train/good``; evaluate on ``eval_dir`` (default: ``data_dir`` when it has ``test/``).

    The architecture and every training setting left ``None`` come from the backbone family's recipe
    (:mod:`models.detector.recipes`); ``teacher_weights`` ``"pretrained"`` is resolved through the workspace's
    weights settings, then timm (:mod:`models.weight_sources`).

    Returns:
        Version, run id, where the teacher weights came from, and the evaluation's headline metrics.
    """
    settings = load_settings(home)
    recipe = recipe_for(backbone).with_overrides(image_size=image_size, epochs=epochs, batch_size=batch_size, lr=lr)
    teacher_weights = resolve_backbone_weights(settings, TEACHER, backbone, teacher_weights)
    config = DetectorConfig.for_backbone(
        backbone, image_size=recipe.image_size, teacher_weights=teacher_weights, **(config_overrides or {})
    )
    device = training_device()
    evaluation_dir = eval_dir or (data_dir if has_test_split(Path(data_dir)) else None)
    with tracked_run(settings, EXPERIMENT_TRAINING, run_name=f"detector-{backbone}-{recipe.image_size}") as run:
        log_params(
            {"model": DETECTOR_NAME, "data_dir": data_dir, "eval_dir": evaluation_dir, "seed": seed}
            | {"device": device, "max_minutes": max_minutes, "optimizer": "Adam", **recipe.to_params()}
            | {f"config_{k}": v for k, v in config.to_dict().items()}
        )
        result = train_detector(
            config,
            data_dir,
            recipe,
            seed=seed,
            max_minutes=max_minutes,
            device=device,
            on_epoch=lambda entry: log_metrics(entry, step=int(entry["epoch"])),
        )
        _log_training_record(result)
        with tempfile.TemporaryDirectory() as scratch:
            metrics = _log_evaluation_and_curves(result, evaluation_dir, Path(scratch), device)
            version = _register(settings, result, metrics, Path(scratch), run.info.run_id, data_dir, tags)
    return _summary(result, version, run.info.run_id, metrics)


def _register(
    settings: Settings,
    result: DetectorTrainResult,
    metrics: dict[str, Any],
    scratch: Path,
    run_id: str,
    data_dir: str,
    tags: dict[str, str] | None,
) -> str:
    """Package the trained detector and register it as challenger, tagged with its data folder, the teacher's weights,
    the headline metrics and the caller's ``tags``; returns the version."""
    package = save_detector(scratch / "package", result.model.cpu(), result.calibration, result.package_extra())
    return publish_model(
        settings,
        DETECTOR_NAME,
        package,
        run_id,
        {
            "data_dir": data_dir,
            "teacher_weights": result.weights_info.source,
            "teacher_weights_detail": result.weights_info.detail,
            **{k: f"{metrics[k]:.4f}" for k in HEADLINE if k in metrics},
            **(tags or {}),
        },
    )


def _summary(result: DetectorTrainResult, version: str, run_id: str, metrics: dict[str, Any]) -> dict[str, Any]:
    """The task's small record: version, run, the teacher's weights, the training record and headline metrics."""
    return {
        "model": DETECTOR_NAME,
        "version": version,
        "run_id": run_id,
        "teacher_weights": result.weights_info.source,
        "teacher_pretrained": result.weights_info.pretrained,
        "teacher_weights_detail": result.weights_info.detail,
        "nonfinite_recoveries": result.divergence.get("recoveries", 0),
        "epochs_completed": result.epochs_completed,
        "image_threshold": result.calibration.image_threshold,
        **{k: metrics[k] for k in HEADLINE if k in metrics},
    }


def _log_training_record(result: DetectorTrainResult) -> None:
    """Where the teacher's weights came from, the divergence record and the calibration, as MLflow params."""
    log_params(result.weights_info.as_params("teacher"))
    log_params({"nonfinite_recoveries": result.divergence.get("recoveries", 0)})
    log_params(calibration_params(result.calibration))


def _log_evaluation_and_curves(
    result: DetectorTrainResult, evaluation_dir: str | None, scratch: Path, device: str
) -> dict[str, Any]:
    """Evaluate where a test set exists and log the report, the metrics and the loss curve; returns the metrics."""
    metrics: dict[str, Any] = {"epochs_completed": result.epochs_completed, **result.seconds}
    if evaluation_dir:
        out = scratch / "evaluation"
        out.mkdir()
        evaluation = detector_report_artifacts(result.model, result.calibration, Path(evaluation_dir), out, device)
        metrics.update({k: evaluation[k] for k in HEADLINE})
        (out / "evaluation.json").write_text(json.dumps(evaluation, indent=2, default=float))
        log_artifacts(out, "evaluation")
    log_metrics(metrics)
    history = result.history
    series = {"train loss": ([h["epoch"] for h in history], [h["loss"] for h in history])}
    if history and "val_loss" in history[0]:
        series["val loss"] = ([h["epoch"] for h in history], [h["val_loss"] for h in history])
    log_artifact(line_plot(scratch / "loss_curve.png", series, "epoch", "loss"))
    return metrics
