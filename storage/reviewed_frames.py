"""Verdicts joined with the shift's scores: what recalibration, retraining, promotion and the export read.

A verdict alone says what a reviewer saw; the scores row says what the model said about the same frame (raw score,
decision, which detector version scored it). Every use of verdicts needs both, so the join lives here once, with
the rule of what a verdict means for the models: the latest verdict of a frame counts, ``defect`` is a positive,
``false_alarm`` a negative, ``unsure`` neither (:class:`storage.verdicts.Verdict`).
"""

from __future__ import annotations

from dataclasses import asdict

import pandas as pd

from models.errors import DefectflowError
from storage.ids import validate_shift_id
from storage.settings import Settings
from storage.tables import MANIFEST_FILE, SCORES_FILE, ingested_shifts, read_scores
from storage.verdicts import VERDICT_COLUMNS, Verdict, VerdictStore

#: Columns of the scores table carried next to each verdict (``status`` as ``score_status``).
SCORE_FIELDS = ["score", "is_anomalous", "raw_score", "threshold", "score_status", "detector_version", "scored_at"]
#: Label of each verdict for the models: ``True`` a defect, ``False`` a normal frame; ``unsure`` has none.
LABELS = {Verdict.DEFECT.value: True, Verdict.FALSE_ALARM.value: False}


class UnknownShift(DefectflowError, LookupError):
    """A shift id the workspace has neither ingested nor scored; the message says how to find the right one."""


def require_shift(settings: Settings, shift_id: str) -> str:
    """``shift_id`` when the workspace has its manifest or scores, else :class:`UnknownShift`.

    Raises:
        storage.ids.InvalidShiftId: An id that is not valid.
        UnknownShift: A valid id the workspace does not know.
    """
    folder = settings.results_dir(validate_shift_id(shift_id))
    if not ((folder / MANIFEST_FILE).is_file() or (folder / SCORES_FILE).is_file()):
        known = sorted(ingested_shifts(settings.results_root))
        listed = ", ".join(known[:10]) + (" ..." if len(known) > 10 else "") if known else "none"
        raise UnknownShift(
            f"shift {shift_id!r} is not in the workspace {settings.home} (ingested shifts: {listed}); check the id "
            "and --home"
        )
    return shift_id


def _with_scores(settings: Settings, verdicts: pd.DataFrame) -> pd.DataFrame:
    """``verdicts`` with :data:`SCORE_FIELDS` of each frame's scores row (missing where the frame has none)."""
    parts = []
    for shift_id, rows in verdicts.groupby("shift_id", sort=True):
        scores = read_scores(settings.results_dir(str(shift_id))).rename(columns={"status": "score_status"})
        parts.append(rows.merge(scores[["image_id", *SCORE_FIELDS]], on="image_id", how="left"))
    if not parts:
        return pd.DataFrame(columns=[*verdicts.columns, *SCORE_FIELDS])
    return pd.concat(parts).sort_values("id", kind="stable").reset_index(drop=True)


def verdict_history(settings: Settings, shift_id: str) -> pd.DataFrame:
    """Every verdict recorded on a shift, oldest first, with the frame's scores (the export).

    Raises:
        UnknownShift: The workspace does not know the shift.
    """
    require_shift(settings, shift_id)
    return _with_scores(settings, VerdictStore(settings.verdicts_path).table(shift_id))


def latest_reviews(settings: Settings, shifts: list[str] | None = None) -> pd.DataFrame:
    """The verdict that counts for each reviewed frame of ``shifts`` (all shifts when ``None``), with its scores
    and its ``label`` (``True`` defect, ``False`` false alarm, missing for unsure)."""
    latest = VerdictStore(settings.verdicts_path).latest()
    chosen = [record for (shift_id, _), record in latest.items() if shifts is None or shift_id in shifts]
    rows = [asdict(record) | {"verdict": record.verdict.value} for record in chosen]
    reviews = _with_scores(settings, pd.DataFrame(rows, columns=VERDICT_COLUMNS))
    reviews["label"] = reviews["verdict"].map(LABELS)
    return reviews


def labelled(reviews: pd.DataFrame) -> pd.DataFrame:
    """The rows of :func:`latest_reviews` that carry a label (``defect`` or ``false_alarm``)."""
    return reviews[reviews["label"].notna()].assign(label=lambda rows: rows["label"].astype(bool))
