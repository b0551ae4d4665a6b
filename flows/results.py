"""What each flow returns: one small frozen record per flow, read by attribute by the CLI, the tests and benchmarks.

They live together so that a flow's callers import its result's shape without importing the flow's tasks (the
command line process imports no torch, see docs/architecture.md), and each field is typed where a key used to be
read by name. The fields and their order are those of the dictionaries the flows returned, so
:func:`dataclasses.asdict` gives what was printed and written before. Prefect stores a flow's return value with
cloudpickle when results are persisted; plain frozen dataclasses of builtins round-trip through it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class IngestResult:
    """Flow ``ingest_shift``: counts per status, why files were quarantined or refused, where the shift went."""

    shift_id: str
    files: int
    new: int
    ingested: int
    duplicate: int
    quarantined: int
    quarantine_reasons: dict[str, str]
    refused: dict[str, str]
    manifest: str
    store: str


@dataclass(frozen=True)
class ScoringResult:
    """Flow ``nightly_scoring``: counts, throughput, the tables and report written, the MLflow run, the models."""

    shift_id: str
    frames: int
    scored_this_run: int
    scored: int
    flagged: int
    no_component: int
    failed: int
    images_per_second: float
    scores: str
    report: str
    mlflow_run_id: str | None
    mlflow_not_logged: str | None
    segmenter_version: str | None
    detector_version: str
    seconds: dict[str, float]
    phase_seconds: dict[str, float]


@dataclass(frozen=True)
class VerifyResult:
    """Flow ``verify_shift``: arrays checked, what is damaged (image id -> problem), the commands that repair it."""

    shift_id: str
    frames_checked: int
    heatmaps_checked: int
    damaged_frames: dict[str, str]
    damaged_heatmaps: dict[str, str]
    repair_frames: str | None
    repair_heatmaps: str | None


@dataclass(frozen=True)
class PromotionResult:
    """Flow ``promote``: the decision and why, the versions behind each alias afterwards, both metric sets.

    ``reviewed`` is :func:`flows.promotion.reviewed_evaluation`'s summary for a detector, ``None`` for a segmenter.
    """

    model: str
    promoted: bool
    reason: str
    challenger_version: str
    champion_version: str | None
    previous_version: str | None
    challenger_metrics: dict[str, Any]
    champion_metrics: dict[str, Any] | None
    reviewed: dict[str, Any] | None
    mlflow_run_id: str


@dataclass(frozen=True)
class RollbackResult:
    """Flow ``rollback``: the version restored as champion and the one demoted."""

    model: str
    champion_version: str
    demoted_version: str


@dataclass(frozen=True)
class RecalibrationResult:
    """Flow ``recalibrate``: the challenger registered, its threshold against the champion's, the verdicts used."""

    model: str
    version: str
    source_version: str
    run_id: str
    threshold: float
    previous_threshold: float
    image_f1: float
    defect: int
    false_alarm: int
    skipped_other_version: int
    not_scored: int
    unsure: int
    shifts: list[str]


@dataclass(frozen=True)
class DetectorTrainingResult:
    """Flow ``train_detector`` (and ``retrain``): the version registered, the teacher's weights, the training
    record and the evaluation's headline metrics (``None`` without a test split to evaluate on)."""

    model: str
    version: str
    run_id: str
    teacher_weights: str
    teacher_pretrained: bool
    teacher_weights_detail: str
    nonfinite_recoveries: int
    epochs_completed: int
    image_threshold: float
    image_auroc: float | None = None
    pixel_auroc: float | None = None
    aupro: float | None = None
    image_f1_max: float | None = None
    pixel_f1_max: float | None = None
    ms_per_image: float | None = None


@dataclass(frozen=True)
class SegmenterTrainingResult:
    """Flow ``train_segmenter`` (and ``retrain`` with ``seg_data``): the version registered, the encoder's weights
    and the kept epoch's validation metrics."""

    model: str
    version: str
    run_id: str
    encoder_weights: str
    encoder_pretrained: bool
    encoder_weights_detail: str
    val_miou: float
    val_pixel_accuracy: float
    best_epoch: int
    train_images: int
    val_images: int
    training_seconds: float
    stopped_early: bool


@dataclass(frozen=True)
class RetrainResult:
    """Flow ``retrain``: the lineage tags of the training set and the models trained on it."""

    lineage: dict[str, str]
    detector: DetectorTrainingResult
    segmenter: SegmenterTrainingResult | None = None


@dataclass(frozen=True)
class DetectorEvaluation:
    """Flow ``evaluate_detector``: image and pixel metrics overall and per defect type, the worst cases, and the
    metrics at the package's thresholds (``None`` for a package without a calibration)."""

    model_uri: str
    version: str | None
    image_auroc: float
    image_f1_max: float
    pixel_auroc: float
    pixel_f1_max: float
    aupro: float
    ms_per_image: float
    n_images: int
    n_defective: int
    image_size: int
    per_defect: dict[str, dict[str, Any]]
    worst_cases: dict[str, list[dict[str, Any]]]
    at_threshold: dict[str, Any] | None = None


@dataclass(frozen=True)
class SegmenterEvaluation:
    """Flow ``evaluate_segmenter``: mIoU, IoU per class (``None`` for a class absent from the set), pixel accuracy
    and speed."""

    model_uri: str
    version: str | None
    miou: float
    per_class_iou: dict[str, float | None]
    pixel_accuracy: float
    ms_per_image: float
    images: int
    image_size: int
