"""Flows ``evaluate_segmenter`` and ``evaluate_detector``: metrics of one model on a labelled set."""

from __future__ import annotations

from prefect import flow

from flows.results import DetectorEvaluation, SegmenterEvaluation
from flows.training import require_dir
from storage.settings import load_settings
from tasks.evaluate_models import evaluate_detector_task, evaluate_segmenter_task, write_json


@flow(name="evaluate_segmenter", log_prints=True)
def evaluate_segmenter_flow(
    data: str, model: str = "models:/segmenter@champion", home: str | None = None, json_out: str | None = None
) -> SegmenterEvaluation:
    """mIoU, per-class IoU, pixel accuracy and ms per image of ``model`` on ``data``."""
    folder = require_dir(data, ["images", "masks"], "segmentation")
    settings = load_settings(home).ensure()
    result = evaluate_segmenter_task(str(settings.home), str(folder), model)
    if json_out:
        write_json(json_out, result)
    return SegmenterEvaluation(**result)


@flow(name="evaluate_detector", log_prints=True)
def evaluate_detector_flow(
    data: str,
    model: str = "models:/detector@champion",
    home: str | None = None,
    json_out: str | None = None,
    out_dir: str | None = None,
) -> DetectorEvaluation:
    """Image and pixel metrics of ``model`` on ``data/test``; overlays of the worst cases into ``out_dir``."""
    folder = require_dir(data, ["test"], "MVTec-layout")
    settings = load_settings(home).ensure()
    result = evaluate_detector_task(str(settings.home), str(folder), model, out_dir)
    if json_out:
        write_json(json_out, result)
    return DetectorEvaluation(**result)
