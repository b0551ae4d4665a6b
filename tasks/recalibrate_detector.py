"""Task: refit the champion detector's image threshold on verdicts and register it as a challenger.

The challenger is the champion's network with a new calibration: the same ``weights.pt`` (same SHA-256), a new
``defectflow_model.json``. Registered like any trained model, so ``promote`` judges it and ``rollback`` undoes it.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from prefect import task

from models.detector.calibration import Calibration
from models.detector.package import read_calibration, save_recalibrated
from models.detector.recalibration import REVIEWED_METHOD, NotEnoughReviews, recalibrate_on_reviews
from storage.registry import CHAMPION, DIGEST_TAG, ROLLED_BACK, ResolvedModel, resolve_model, version_tags
from storage.reviewed_frames import labelled, latest_reviews
from storage.settings import Settings, load_settings
from storage.tables import ScoreStatus
from storage.tracking import EXPERIMENT_TRAINING, log_metrics, log_params, tracked_run
from tasks.publish_model import publish_model
from tasks.train_detector import DETECTOR_NAME, calibration_params

#: Source tags not carried over to the recalibrated version: its own digests and commit are recorded afresh.
_NOT_INHERITED = (DIGEST_TAG, "git_commit", ROLLED_BACK)


@dataclass(frozen=True)
class ReviewedSample:
    """The reviewed frames a threshold is fitted on, and how many reviewed frames were left out and why."""

    raw_scores: np.ndarray
    is_defect: np.ndarray
    shifts: list[str]
    unsure: int
    other_version: int
    not_scored: int

    def counts(self) -> str:
        """What was left out, in words, for messages."""
        return (
            f"{self.other_version} reviewed frame(s) skipped because another detector version scored them, "
            f"{self.not_scored} without a score, {self.unsure} unsure ignored"
        )


def reviewed_sample(settings: Settings, shifts: list[str] | None, version: str) -> ReviewedSample:
    """Latest verdicts of ``shifts`` (all reviewed shifts when ``None``) on frames detector ``version`` scored.

    Only that version's raw scores are comparable with its threshold, so frames another version scored are left out.
    """
    reviews = latest_reviews(settings, shifts)
    rows = labelled(reviews)
    scored = (rows["score_status"] == ScoreStatus.SCORED) & rows["raw_score"].astype(float).notna()
    mine = scored & (rows["detector_version"].astype(str) == str(version))
    used = rows[mine]
    return ReviewedSample(
        raw_scores=used["raw_score"].astype(float).to_numpy(),
        is_defect=used["label"].to_numpy(dtype=bool),
        shifts=sorted(set(used["shift_id"])),
        unsure=int(reviews["label"].isna().sum()),
        other_version=int((scored & ~mine).sum()),
        not_scored=int((~scored).sum()),
    )


def _lineage(source_tags: dict[str, str], version: str, sample: ReviewedSample) -> dict[str, str]:
    inherited = {k: v for k, v in source_tags.items() if not k.startswith(_NOT_INHERITED)}
    return inherited | {
        "recalibrated_from": version,
        "calibration_method": REVIEWED_METHOD,
        "verdicts/reviewed_frames": str(sample.is_defect.size),
        "verdicts/defect": str(int(sample.is_defect.sum())),
        "verdicts/false_alarm": str(int((~sample.is_defect).sum())),
        "verdicts/skipped_other_version": str(sample.other_version),
        "verdicts/shifts": ",".join(sample.shifts),
    }


@dataclass(frozen=True)
class Recalibration:
    """A fitted threshold not yet registered: the champion it comes from, the frames, both calibrations."""

    source: ResolvedModel
    sample: ReviewedSample
    previous: Calibration
    calibration: Calibration


def plan_recalibration(settings: Settings, shifts: list[str] | None) -> Recalibration:
    """Fit the champion's image threshold on the reviewed frames it scored, registering nothing.

    Raises:
        storage.registry.ModelNotFound: Without a champion detector.
        NotEnoughReviews: Without a defect and a false alarm among those frames; the message gives every count.
    """
    source = resolve_model(settings, f"models:/{DETECTOR_NAME}@{CHAMPION}", DETECTOR_NAME)
    sample = reviewed_sample(settings, shifts, str(source.version))
    previous = read_calibration(source.local_dir)
    details = {"source_version": source.version, "shifts": ",".join(sample.shifts), "skipped": sample.counts()}
    try:
        calibration = recalibrate_on_reviews(previous, sample.raw_scores, sample.is_defect, details)
    except NotEnoughReviews as error:
        where = ", ".join(shifts) if shifts else "all reviewed shifts"
        raise NotEnoughReviews(
            f"cannot recalibrate {source.label}: {error} among the frames it scored ({where}; {sample.counts()}). "
            "Review more flagged frames (at least one defect and one false alarm), or name other shifts with --shifts"
        ) from error
    return Recalibration(source, sample, previous, calibration)


@task(name="recalibrate-detector")
def recalibrate_detector_task(home: str, shifts: list[str] | None = None) -> dict[str, Any]:
    """Fit the champion's image threshold on the reviewed frames it scored; register the result as challenger.

    Raises:
        NotEnoughReviews: Without a defect and a false alarm among those frames (:func:`plan_recalibration`).
    """
    settings = load_settings(home)
    plan = plan_recalibration(settings, shifts)
    source, sample, calibration = plan.source, plan.sample, plan.calibration
    tags = _lineage(version_tags(settings, DETECTOR_NAME, str(source.version)), str(source.version), sample)
    with tracked_run(settings, EXPERIMENT_TRAINING, run_name=f"recalibrate-detector-v{source.version}") as run:
        log_params({"model": DETECTOR_NAME, "source_version": source.version, "shifts": ",".join(sample.shifts)})
        log_params(calibration_params(calibration))
        log_metrics({k: calibration.details[k] for k in ("image_f1", "image_precision", "image_recall")})
        with tempfile.TemporaryDirectory() as scratch:
            package = save_recalibrated(source.local_dir, Path(scratch) / "package", calibration)
            version = publish_model(settings, DETECTOR_NAME, package, run.info.run_id, tags)
    return {
        "model": DETECTOR_NAME,
        "version": version,
        "source_version": source.version,
        "run_id": run.info.run_id,
        "threshold": calibration.image_threshold,
        "previous_threshold": plan.previous.image_threshold,
        "image_f1": calibration.details["image_f1"],
        "defect": int(sample.is_defect.sum()),
        "false_alarm": int((~sample.is_defect).sum()),
        "skipped_other_version": sample.other_version,
        "not_scored": sample.not_scored,
        "unsure": sample.unsure,
        "shifts": sample.shifts,
    }
