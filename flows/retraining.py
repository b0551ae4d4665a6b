"""Flow ``retrain``: a new detector (and segmenter) from recent shifts' confidently normal frames.

Frames that scored normal with a margin below the decision (never flagged, failed or quarantined ones) are used,
corrected by the operators' verdicts: a frame whose latest verdict is ``defect`` is never trained on, a scored
frame reviewed ``false_alarm`` is trained on as normal however high it scored (:func:`training_frames`). They are
cropped with the champion segmenter, optionally with a curated folder of good parts. The result is evaluated on
the fixed evaluation set and registered as ``challenger`` with lineage tags; promotion is a separate, gated step
(flow ``promote``).
"""

from __future__ import annotations

import hashlib
import shutil
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pandas as pd
from prefect import flow, get_run_logger

from flows.batching import batches
from flows.promotion import evaluation_set
from flows.results import DetectorTrainingResult, RetrainResult, SegmenterTrainingResult
from flows.runtime import default_task_runner
from flows.scoring import DEFAULT_SEGMENTER, pin_model
from flows.training import DataError, require_dir
from models.detector.recipes import RECOMMENDED_BACKBONE
from models.imaging import IMAGE_SUFFIXES
from models.segmentation.recipes import DEFAULT_BACKBONE as SEGMENTER_BACKBONE
from models.weight_sources import PRETRAINED
from storage.ids import validate_shift_id
from storage.reviewed_frames import labelled, latest_reviews
from storage.settings import Settings, load_settings
from storage.tables import SCORES_FILE, ScoreStatus, read_scores
from tasks.extract_crops import extract_crops
from tasks.model_ref import ModelRef
from tasks.train_detector import train_detector_task
from tasks.train_segmenter import train_segmenter_task

NORMAL_MARGIN = 0.1  # a frame is "confidently normal" when its normalised score is at most 0.5 - margin


def select_shifts(settings: Settings, shifts: list[str] | None, since_days: int | None) -> list[str]:
    """Shifts named explicitly, else those scored in the last ``since_days`` days (default 7)."""
    if shifts:
        chosen = [validate_shift_id(s) for s in shifts]
        unscored = [s for s in chosen if not (settings.results_dir(s) / SCORES_FILE).is_file()]
        if unscored:
            raise DataError(
                f"shift(s) {', '.join(unscored)} have no scores in {settings.results_root}; score them first "
                f"('defectflow score --shift {unscored[0]}') or leave --shifts out to use the shifts of the last "
                "--since-days"
            )
        return chosen
    cutoff = datetime.now(timezone.utc) - timedelta(days=since_days or 7)
    chosen = []
    for path in sorted(settings.results_root.glob(f"*/{SCORES_FILE}")):
        if datetime.fromtimestamp(path.stat().st_mtime, timezone.utc) >= cutoff:
            chosen.append(path.parent.name)
    return chosen


def confidently_normal(scores: pd.DataFrame, margin: float = NORMAL_MARGIN) -> list[str]:
    """Image ids scored normal with ``margin`` below the 0.5 decision."""
    keep = (
        (scores["status"] == ScoreStatus.SCORED)
        & (~scores["is_anomalous"].astype(bool))
        & (scores["score"] <= 0.5 - margin)
    )
    return sorted(scores.loc[keep, "image_id"])


@dataclass(frozen=True)
class TrainingFrames:
    """The frames of one shift to train on, and what the verdicts changed against the score rule alone.

    Attributes:
        image_ids: Frames to train on, sorted.
        excluded_defect: Confidently normal frames left out because their latest verdict is ``defect``.
        added_false_alarm: Frames reviewed ``false_alarm`` that the score rule alone would not have used.
    """

    image_ids: list[str]
    excluded_defect: int = 0
    added_false_alarm: int = 0


def training_frames(scores: pd.DataFrame, reviews: pd.DataFrame) -> TrainingFrames:
    """The score rule (:func:`confidently_normal`) corrected by the latest verdicts (``reviews``, one shift's
    :func:`storage.reviewed_frames.latest_reviews`): never a ``defect``, every scored ``false_alarm``."""
    normal = set(confidently_normal(scores))
    scored = set(scores.loc[scores["status"] == ScoreStatus.SCORED, "image_id"])
    rows = labelled(reviews)
    defect = set(rows.loc[rows["label"], "image_id"])
    false_alarm = set(rows.loc[~rows["label"], "image_id"]) & scored
    return TrainingFrames(sorted((normal | false_alarm) - defect), len(normal & defect), len(false_alarm - normal))


def _crops_of_recent_shifts(
    settings: Settings, chosen: list[str], seg_ref: ModelRef, good: Path, batch_size: int
) -> tuple[list[str], list[str], dict[str, str]]:
    """Crop the training frames of ``chosen`` into ``good`` on Dask; returns the names, the shifts that gave any,
    and the verdicts' lineage tags."""
    futures, used_shifts, excluded, added = [], [], 0, 0
    for shift_id in chosen:
        frames = training_frames(read_scores(settings.results_dir(shift_id)), latest_reviews(settings, [shift_id]))
        excluded, added = excluded + frames.excluded_defect, added + frames.added_false_alarm
        if frames.image_ids:
            used_shifts.append(shift_id)
        for chunk in batches(frames.image_ids, batch_size):
            futures.append(extract_crops.submit(str(settings.store_path), shift_id, chunk, seg_ref, str(good)))
    names: list[str] = []
    for future in futures:
        names.extend(future.result())
    return names, used_shifts, {"verdicts/excluded_defect": str(excluded), "verdicts/added_false_alarm": str(added)}


def _copy_curated(curated: Path, good: Path) -> list[str]:
    """Copy a curated folder's images (recursively) into ``good``, named after their relative paths."""
    if not curated.is_dir():
        raise DataError(f"--good-dir {curated} does not exist")
    names = []
    for path in sorted(curated.rglob("*")):
        if path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith("."):
            name = f"curated__{path.relative_to(curated).as_posix().replace('/', '__')}"
            shutil.copy2(path, good / name)
            names.append(name)
    return names


def list_digest(names: list[str]) -> str:
    """SHA-256 of the sorted training image list: two models with the same digest saw the same images."""
    return hashlib.sha256("\n".join(sorted(names)).encode()).hexdigest()


def _training_set(
    settings: Settings, chosen: list[str], seg_ref: ModelRef, good_dir: str | None, batch_size: int
) -> tuple[Path, dict[str, str]]:
    """Crop the chosen shifts' training frames (and copy a curated folder) into a new dataset folder of the
    workspace; returns it with the lineage tags that say what went in.

    Raises:
        DataError: Fewer than 8 images in all: too little to train on.
    """
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
    dataset = settings.home / "datasets" / f"retrain-{stamp}"
    good = dataset / "train" / "good"
    good.mkdir(parents=True, exist_ok=True)
    names, used_shifts, verdict_tags = _crops_of_recent_shifts(settings, chosen, seg_ref, good, batch_size)
    if good_dir:
        names.extend(_copy_curated(Path(good_dir).expanduser(), good))
    if len(names) < 8:
        raise DataError(
            f"only {len(names)} training images (shifts: {', '.join(chosen) or 'none'}); score more shifts, "
            "widen --since-days, or add a curated folder with --good-dir"
        )
    digest = list_digest(names)
    get_run_logger().info(
        "retraining on %d images from %d shifts (digest %s)", len(names), len(used_shifts), digest[:12]
    )
    (dataset / "training_list.txt").write_text("\n".join(sorted(names)) + "\n")
    lineage = {
        "shifts": ",".join(used_shifts) or "none",
        "frame_count": str(len(names)),
        "training_list_sha256": digest,
        "curated_dir": str(good_dir) if good_dir else "none",
        "segmenter_for_crops": seg_ref.uri,
        "dataset_dir": str(dataset),
        **verdict_tags,
    }
    return dataset, lineage


@flow(name="retrain", log_prints=True, task_runner=default_task_runner())
def retrain(
    home: str | None = None,
    since_days: int | None = None,
    shifts: list[str] | None = None,
    good_dir: str | None = None,
    eval_data: str | None = None,
    seg_data: str | None = None,
    segmenter: str = DEFAULT_SEGMENTER,
    backbone: str = RECOMMENDED_BACKBONE,
    image_size: int | None = None,
    epochs: int | None = None,
    max_minutes: float | None = None,
    seg_backbone: str = SEGMENTER_BACKBONE,
    seg_image_size: int | None = None,
    seg_epochs: int | None = None,
    seed: int = 0,
    batch_size: int = 8,
    teacher_weights: str = PRETRAINED,
    encoder_weights: str = PRETRAINED,
) -> RetrainResult:
    """Build a training set from recent shifts, train, evaluate on the fixed set, register as challenger.

    Args:
        home: Workspace directory.
        since_days: Use shifts scored in the last N days (default 7) when ``shifts`` is not given.
        shifts: Shift ids to use.
        good_dir: A curated folder of good component images (crops) to add.
        eval_data: Fixed evaluation set (MVTec AD layout); default ``DEFECTFLOW_EVAL_DATA``.
        seg_data: When given, the segmenter is retrained on this folder (``images/``, ``masks/``) too.
        segmenter: The segmenter that crops the frames (default the champion).
        backbone, image_size, epochs, max_minutes: Detector training (``None``: the backbone's recipe).
        seg_backbone, seg_image_size, seg_epochs: Segmenter training (with ``seg_data``; ``None``: the recipe).
        seed: Training seed.
        batch_size: Frames per crop-extraction task.
        teacher_weights: Detector teacher weights: ``"pretrained"`` (the weights settings, then timm), ``"timm"``,
            a state-dict path, or ``"none"`` (random: the run says so).
        encoder_weights: Segmenter encoder weights (with ``seg_data``), same choices.
    """
    settings = load_settings(home).ensure()
    evaluation = evaluation_set(settings, "detector", eval_data)
    chosen = select_shifts(settings, shifts, since_days)
    dataset, lineage = _training_set(
        settings, chosen, pin_model(settings, segmenter, "segmenter"), good_dir, batch_size
    )
    detector = _train_detector(
        settings, dataset, evaluation, lineage, backbone, image_size, epochs, max_minutes, seed, teacher_weights
    )
    segmenter = (
        _train_segmenter(settings, seg_data, seg_backbone, seg_image_size, seg_epochs, seed, encoder_weights)
        if seg_data
        else None
    )
    return RetrainResult(lineage, detector, segmenter)


def _train_detector(
    settings: Settings,
    dataset: Path,
    evaluation: Path,
    lineage: dict[str, str],
    backbone: str,
    image_size: int | None,
    epochs: int | None,
    max_minutes: float | None,
    seed: int,
    teacher_weights: str,
) -> DetectorTrainingResult:
    """Train the detector on the retraining set, evaluate it on the fixed set, register it with the lineage tags."""
    trained = train_detector_task(
        str(settings.home),
        str(dataset),
        backbone=backbone,
        image_size=image_size,
        epochs=epochs,
        seed=seed,
        teacher_weights=teacher_weights,
        max_minutes=max_minutes,
        eval_dir=str(evaluation),
        tags=lineage,
    )
    return DetectorTrainingResult(**trained)


def _train_segmenter(
    settings: Settings,
    seg_data: str,
    backbone: str,
    image_size: int | None,
    epochs: int | None,
    seed: int,
    encoder_weights: str,
) -> SegmenterTrainingResult:
    """Train the segmenter on ``seg_data`` (``images/``, ``masks/``) alongside, and register it."""
    folder = require_dir(seg_data, ["images", "masks"], "segmentation")
    trained = train_segmenter_task(
        str(settings.home),
        str(folder),
        backbone=backbone,
        image_size=image_size,
        epochs=epochs,
        seed=seed,
        encoder_weights=encoder_weights,
        tags={"data_dir": str(folder)},
    )
    return SegmenterTrainingResult(**trained)
