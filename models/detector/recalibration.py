"""The image threshold refitted on operator verdicts: F1-optimal over the raw scores of reviewed frames.

A reviewer's verdict is image-level ("defect", "false alarm"); nobody draws a mask. So only the image threshold
is refitted, with the same F1 search the ``f1`` calibration uses (:func:`models.metrics.anomaly.f1_max`), and the
pixel threshold and its normalisation range stay as they were: without pixel labels there is nothing to fit it
on, and the heatmaps keep the meaning operators have learnt to read. The image range is widened to take in the
reviewed scores, so none of them is clipped by the normalisation (see :mod:`models.detector.calibration`).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from models.detector.calibration import Calibration
from models.errors import DefectflowError
from models.metrics.anomaly import f1_max

#: ``Calibration.method`` of a threshold fitted on verdicts.
REVIEWED_METHOD = "f1-reviewed"


class NotEnoughReviews(DefectflowError, ValueError):
    """Verdicts that cannot fit a threshold (no defect or no false alarm); the message gives the counts."""


def recalibrate_on_reviews(
    calibration: Calibration, raw_scores: np.ndarray, is_defect: np.ndarray, details: dict[str, Any] | None = None
) -> Calibration:
    """``calibration`` with its image threshold at the F1 optimum of the reviewed frames.

    Args:
        calibration: The current calibration (its pixel threshold and pixel range are kept).
        raw_scores: Raw image scores of the reviewed frames, from the model ``calibration`` belongs to.
        is_defect: ``True`` for frames reviewed ``defect``, ``False`` for ``false_alarm``.
        details: More to record in ``Calibration.details`` (shifts, skipped counts...).

    Raises:
        NotEnoughReviews: Without at least one defect and one false alarm (F1 needs both).
    """
    scores = np.asarray(raw_scores, dtype=np.float64).ravel()
    labels = np.asarray(is_defect, dtype=bool).ravel()
    defects, false_alarms = int(labels.sum()), int(labels.size - labels.sum())
    if defects == 0 or false_alarms == 0:
        raise NotEnoughReviews(
            f"an F1 threshold needs at least one frame reviewed 'defect' and one 'false_alarm'; found {defects} "
            f"defect and {false_alarms} false alarm"
        )
    best = f1_max(labels, scores)
    return replace(
        calibration,
        image_threshold=best.threshold,
        image_min=min(calibration.image_min, float(scores.min())),
        image_max=max(calibration.image_max, float(scores.max())),
        method=REVIEWED_METHOD,
        details={
            "rule": "F1-optimal image threshold over the raw scores of reviewed frames (defect = positive, "
            "false_alarm = negative); pixel threshold kept",
            "n_defect": defects,
            "n_false_alarm": false_alarms,
            "image_f1": best.f1,
            "image_precision": best.precision,
            "image_recall": best.recall,
            "previous_threshold": calibration.image_threshold,
            "previous_method": calibration.method,
            **(details or {}),
        },
    )
