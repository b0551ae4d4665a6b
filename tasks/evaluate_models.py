"""Tasks: evaluate a registered or local model on a labelled set; figures and overlays for MLflow and users."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from prefect import task

from models.detector.calibration import Calibration
from models.detector.data import read_image_array, scan_mvtec
from models.detector.evaluation import evaluate_detector
from models.detector.inference import resize_map, score_crops
from models.detector.network import ReverseDistillation
from models.segmentation.inference import evaluate_segmenter
from storage.settings import load_settings
from tasks.model_cache import compute_device, get_model
from tasks.model_ref import pin_model
from tasks.plots import line_plot
from tasks.render_overlays import overlay_image


def has_test_split(data_dir: Path) -> bool:
    """Whether an MVTec-layout folder has a labelled ``test/`` split."""
    return (data_dir / "test").is_dir() and any((data_dir / "test").iterdir())


def _worst_overlays(
    model: ReverseDistillation, calibration: Calibration | None, data_dir: Path, names: list[str], out: Path
) -> list[Path]:
    paths = {sample.name: sample.path for sample in scan_mvtec(data_dir, need_train=False, need_test=True).test}
    written = []
    for name in names:
        image = read_image_array(paths[name])
        scores = score_crops(model, [image], calibration)
        heat = scores.maps[0] if scores.maps is not None else scores.raw_maps[0] / max(scores.raw_maps.max(), 1e-8)
        heatmap = resize_map(heat, image.shape[:2])
        target = out / f"{name.replace('/', '__')}.jpg"
        overlay_image(image, heatmap, None).save(target, quality=88)
        written.append(target)
    return written


def detector_report_artifacts(
    model: ReverseDistillation, calibration: Calibration | None, data_dir: Path, out: Path, device: Any
) -> dict[str, Any]:
    """Evaluate on ``data_dir/test`` and write ROC and PR curves and overlays of the worst cases into ``out``."""
    evaluation = evaluate_detector(model, calibration, data_dir, device=device)
    curves = evaluation["curves"]
    line_plot(
        out / "roc.png",
        {
            f"image (AUROC {evaluation['image_auroc']:.3f})": (curves["image_roc"]["fpr"], curves["image_roc"]["tpr"]),
            f"pixel (AUROC {evaluation['pixel_auroc']:.3f})": (curves["pixel_roc"]["fpr"], curves["pixel_roc"]["tpr"]),
        },
        "false positive rate",
        "true positive rate",
    )
    line_plot(
        out / "precision_recall.png",
        {
            "image": (curves["image_pr"]["recall"], curves["image_pr"]["precision"]),
            "pixel": (curves["pixel_pr"]["recall"], curves["pixel_pr"]["precision"]),
        },
        "recall",
        "precision",
    )
    worst = evaluation["worst_cases"]
    names = [c["name"] for c in worst["missed_defects"]] + [c["name"] for c in worst["false_alarms"]]
    overlays = out / "worst_cases"
    overlays.mkdir(parents=True, exist_ok=True)
    _worst_overlays(model.to(device), calibration, data_dir, names, overlays)
    return evaluation


@task(name="evaluate-detector")
def evaluate_detector_task(home: str, data_dir: str, model_uri: str, out_dir: str | None = None) -> dict[str, Any]:
    """Metrics of a detector (registry URI or directory) on an MVTec-layout set; overlays go to ``out_dir``."""
    settings = load_settings(home)
    ref = pin_model(settings, model_uri, "detector")
    model, calibration, _ = get_model(ref)
    data = Path(data_dir)
    if out_dir:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        evaluation = detector_report_artifacts(model, calibration, data, out, compute_device())
    else:
        evaluation = evaluate_detector(model, calibration, data, device=compute_device())
    evaluation.pop("curves", None)
    evaluation.pop("per_image", None)
    return {"model_uri": model_uri, "version": ref.version, **evaluation}


@task(name="evaluate-segmenter")
def evaluate_segmenter_task(home: str, data_dir: str, model_uri: str) -> dict[str, Any]:
    """mIoU, per-class IoU, pixel accuracy and ms per image of a segmenter on ``images/`` + ``masks/``."""
    settings = load_settings(home)
    ref = pin_model(settings, model_uri, "segmenter")
    model, _, _ = get_model(ref)
    evaluation = evaluate_segmenter(model, data_dir, device=compute_device())
    per_class = {str(k): (None if v != v else float(v)) for k, v in evaluation["per_class_iou"].items()}
    return {"model_uri": model_uri, "version": ref.version, **evaluation, "per_class_iou": per_class}


def write_json(path: str | Path, payload: dict[str, Any]) -> Path:
    """Write ``payload`` as indented JSON (NaN as null)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)

    def clean(value: Any) -> Any:
        if isinstance(value, dict):
            return {str(k): clean(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [clean(v) for v in value]
        if isinstance(value, float | np.floating):
            return None if value != value else float(value)
        if isinstance(value, np.integer):
            return int(value)
        return value

    path.write_text(json.dumps(clean(payload), indent=2))
    return path
