"""Flow ``recalibrate``: the champion detector's image threshold refitted on operator verdicts, as a challenger.

The verdicts of the morning review are labels; this turns them into a threshold without retraining. The result is
registered as ``detector@challenger`` (the champion's weights, a new calibration), so the promotion gate and
rollback apply to it like to any model.
"""

from __future__ import annotations

from prefect import flow, get_run_logger

from flows.results import RecalibrationResult
from flows.training import DataError
from storage.reviewed_frames import require_shift
from storage.settings import Settings, load_settings
from tasks.recalibrate_detector import plan_recalibration, recalibrate_detector_task


def chosen_shifts(model: str, settings: Settings, shifts: list[str] | None) -> list[str] | None:
    """The shifts to recalibrate on (``None``: every reviewed shift), once the model and the shifts are checked.

    Raises:
        DataError: A model other than the detector (the segmenter has no threshold to fit).
        storage.reviewed_frames.UnknownShift: A shift the workspace does not know.
    """
    if model != "detector":
        raise DataError(f"only the detector has a threshold to recalibrate, not {model!r}; use --model detector")
    return [require_shift(settings, shift) for shift in shifts] if shifts else None


def check_recalibration(model: str, settings: Settings, shifts: list[str] | None) -> None:
    """Everything the flow needs before it starts: the command line calls it first, so that a user's mistake (a
    wrong shift, no champion, too few verdicts) ends as one line instead of a failed flow run.

    Raises:
        storage.registry.ModelNotFound: Without a champion detector.
        models.detector.recalibration.NotEnoughReviews: Without a defect and a false alarm to fit on.
    """
    plan_recalibration(settings, chosen_shifts(model, settings, shifts))


@flow(name="recalibrate", log_prints=True)
def recalibrate(
    model: str = "detector", shifts: list[str] | None = None, home: str | None = None
) -> RecalibrationResult:
    """Fit ``model``'s image threshold by F1 on the reviewed frames of ``shifts`` (default: every reviewed shift)
    and register it as ``detector@challenger``."""
    settings = load_settings(home).ensure()
    chosen = chosen_shifts(model, settings, shifts)
    result = RecalibrationResult(**recalibrate_detector_task(str(settings.home), chosen))
    get_run_logger().info(
        "detector v%s registered as challenger: threshold %.6g (was %.6g) from %d defect and %d false alarm verdicts",
        result.version,
        result.threshold,
        result.previous_threshold,
        result.defect,
        result.false_alarm,
    )
    return result
