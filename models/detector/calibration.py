"""Decision thresholds and a normalisation that puts the decision at 0.5.

**Thresholds from normal images only** (the usual production case, no defects collected yet). On held-out
normal images (never seen by the student) take the image scores, their 99th percentile ``q`` and median ``m``,
and set::

    threshold = q + margin * (q - m)          (margin = 0.1 by default)

The percentile makes the rule robust to a single odd validation image; the margin, proportional to the spread of
normal scores (so it does not depend on the units of the map), keeps the expected false-alarm rate on new normal
images below 1% despite the percentile being estimated from a few dozen images. With no defect examples the
pixel threshold is the same number: the image score is the map's maximum, so "no pixel of a normal image above
the pixel threshold" and "normal image below the image threshold" are then the same statement, and overlays
agree with the image decision.

**Thresholds with labelled defects** (``method="f1"``): the image threshold maximises the image F1 over the
held-out normals plus the labelled images, the pixel threshold the pixel F1 over all their pixels.

**Normalisation** (anomalib's min-max rule around the threshold, with a wider span)::

    normalised = clip((raw - threshold) / span + 0.5, 0, 1),    span = 2 * max(threshold - min, max - threshold)

with ``min`` / ``max`` the smallest and largest calibration scores (pixel values for pixel maps). It is monotone
non-decreasing, maps the threshold to exactly 0.5, and keeps the units-free decision rule
``anomalous <=> normalised >= 0.5`` for any model. anomalib's span is ``max - min``, which clips everything below
``threshold - (max - min) / 2`` to 0. Our thresholds sit at the top of the normal range (the pixel threshold is
the image threshold, a high quantile of map maxima), so with that span almost every pixel became 0: stored
heatmaps were 97-100 % zeros inside the crop, and their pixel AUROC at full resolution was 0.50. The wider span
keeps every calibration value inside ``[0, 1]`` unclipped, so heatmaps and scores keep their ranking.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any, TypeVar

import numpy as np
import torch

from models.metrics.anomaly import f1_max

ArrayLike = TypeVar("ArrayLike", float, np.ndarray, torch.Tensor)

NORMAL_QUANTILE = 0.99
NORMAL_MARGIN = 0.1


def normal_threshold(scores: np.ndarray, quantile: float = NORMAL_QUANTILE, margin: float = NORMAL_MARGIN) -> float:
    """``q + margin * (q - median)`` of normal scores, ``q`` their ``quantile`` (linear interpolation).

    Raises:
        ValueError: Without any score.
    """
    scores = np.asarray(scores, dtype=np.float64).ravel()
    if scores.size == 0:
        raise ValueError("no normal scores to calibrate on; hold out some normal images (val_fraction > 0).")
    upper = float(np.quantile(scores, quantile))
    return upper + margin * (upper - float(np.median(scores)))


@dataclass
class Calibration:
    """Thresholds and normalisation ranges of a trained detector (stored as ``extra["calibration"]``).

    Attributes:
        image_threshold: Raw image score at and above which an image is anomalous.
        pixel_threshold: Raw map value at and above which a pixel is anomalous.
        image_min: Smallest calibration image score.
        image_max: Largest calibration image score.
        pixel_min: Smallest calibration pixel value.
        pixel_max: Largest calibration pixel value.
        method: ``"normal-quantile"`` or ``"f1"``.
        details: How it was obtained (counts, quantile, margin, F1 at the threshold...).
    """

    image_threshold: float
    pixel_threshold: float
    image_min: float
    image_max: float
    pixel_min: float
    pixel_max: float
    method: str
    details: dict[str, Any] = field(default_factory=dict)

    @staticmethod
    def _normalise(raw: ArrayLike, threshold: float, low: float, high: float) -> ArrayLike:
        span = 2.0 * max(threshold - low, high - threshold, 1e-12)  # no calibration value is clipped
        if isinstance(raw, torch.Tensor):
            return ((raw - threshold) / span + 0.5).clamp(0.0, 1.0)
        out = np.clip((np.asarray(raw, dtype=np.float64) - threshold) / span + 0.5, 0.0, 1.0)
        if np.ndim(out) == 0:
            return float(out)  # type: ignore[return-value]
        return out.astype(np.float32) if np.asarray(raw).dtype == np.float32 else out  # type: ignore[return-value]

    def normalise_image(self, raw: ArrayLike) -> ArrayLike:
        """Raw image score(s) → ``[0, 1]`` with the image threshold at 0.5 (float, array or tensor)."""
        return self._normalise(raw, self.image_threshold, self.image_min, self.image_max)

    def normalise_pixels(self, raw_map: ArrayLike) -> ArrayLike:
        """Raw anomaly map(s) → ``[0, 1]`` with the pixel threshold at 0.5."""
        return self._normalise(raw_map, self.pixel_threshold, self.pixel_min, self.pixel_max)

    def is_anomalous(self, raw: ArrayLike) -> ArrayLike:
        """Image decision: raw score at or above the image threshold."""
        if isinstance(raw, torch.Tensor):
            return raw >= self.image_threshold
        out = np.asarray(raw) >= self.image_threshold
        return bool(out) if out.ndim == 0 else out  # type: ignore[return-value]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary."""
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Calibration:
        """Inverse of :meth:`to_dict`.

        Raises:
            ValueError: When keys are missing (e.g. a package written without calibration).
        """
        required = {f.name for f in fields(cls) if f.name != "details"}
        missing = sorted(required - set(values))
        if missing:
            raise ValueError(
                f"calibration lacks {missing}. The model package was saved without calibration; recalibrate it "
                "with models.detector.calibration.calibrate on held-out normal images."
            )
        return cls(**{k: v for k, v in values.items() if k in required | {"details"}})


def calibrate(
    normal_scores: np.ndarray,
    normal_maps: np.ndarray,
    defect_scores: np.ndarray | None = None,
    defect_maps: np.ndarray | None = None,
    defect_masks: np.ndarray | None = None,
    quantile: float = NORMAL_QUANTILE,
    margin: float = NORMAL_MARGIN,
) -> Calibration:
    """Calibrate thresholds on held-out normal images, F1-optimally when labelled defects are given.

    Args:
        normal_scores: Raw image scores of held-out normal images ``(N,)``.
        normal_maps: Their anomaly maps ``(N, H, W)``.
        defect_scores: Raw scores of labelled images ``(M,)`` (defective, or good ones with empty masks).
        defect_maps: Their maps ``(M, H, W)``.
        defect_masks: Their ground-truth masks ``(M, H, W)``; an image is defective when its mask is non-empty.
        quantile: Normal-score quantile for the normal-only rule.
        margin: Margin (fraction of the normal spread) for the normal-only rule.

    Returns:
        The calibration.
    """
    normal_scores = np.asarray(normal_scores, dtype=np.float64).ravel()
    normal_maps = np.asarray(normal_maps, dtype=np.float32)
    if normal_scores.size == 0 or normal_maps.size == 0:
        raise ValueError("calibration needs held-out normal images; use val_fraction > 0.")
    if defect_scores is None or defect_maps is None or defect_masks is None:
        return _normal_only(normal_scores, normal_maps, quantile, margin)
    return _f1_optimal(normal_scores, normal_maps, defect_scores, defect_maps, defect_masks, quantile, margin)


def _normal_only(normal_scores: np.ndarray, normal_maps: np.ndarray, quantile: float, margin: float) -> Calibration:
    """The normal-only rule, for when no labelled defects exist: one threshold for images and pixels."""
    threshold = normal_threshold(normal_scores, quantile, margin)
    return Calibration(
        image_threshold=threshold,
        pixel_threshold=threshold,
        image_min=float(normal_scores.min()),
        image_max=float(normal_scores.max()),
        pixel_min=float(normal_maps.min()),
        pixel_max=float(normal_maps.max()),
        method="normal-quantile",
        details={
            "rule": f"q{quantile:g} + {margin:g} * (q{quantile:g} - median) of held-out normal image scores; "
            "pixel threshold = image threshold",
            "quantile": quantile,
            "margin": margin,
            "n_normal": int(normal_scores.size),
            "normal_score_median": float(np.median(normal_scores)),
            "normal_score_quantile": float(np.quantile(normal_scores, quantile)),
        },
    )


def _f1_optimal(
    normal_scores: np.ndarray,
    normal_maps: np.ndarray,
    defect_scores: np.ndarray,
    defect_maps: np.ndarray,
    defect_masks: np.ndarray,
    quantile: float,
    margin: float,
) -> Calibration:
    """F1-optimal image and pixel thresholds over held-out normals plus labelled images.

    The normal-only threshold is recorded alongside, so the two rules can be compared.
    """
    defect_scores = np.asarray(defect_scores, dtype=np.float64).ravel()
    defect_maps = np.asarray(defect_maps, dtype=np.float32)
    defect_masks = np.asarray(defect_masks).astype(bool)
    labels = np.r_[np.zeros(normal_scores.size, dtype=bool), defect_masks.reshape(len(defect_masks), -1).any(1)]
    scores = np.r_[normal_scores, defect_scores]
    image_best = f1_max(labels, scores)
    all_maps = np.concatenate([normal_maps, defect_maps])
    all_masks = np.concatenate([np.zeros(normal_maps.shape, dtype=bool), defect_masks])
    pixel_best = f1_max(all_masks, all_maps)
    return Calibration(
        image_threshold=image_best.threshold,
        pixel_threshold=pixel_best.threshold,
        image_min=float(scores.min()),
        image_max=float(scores.max()),
        pixel_min=float(all_maps.min()),
        pixel_max=float(all_maps.max()),
        method="f1",
        details={
            "rule": "F1-optimal image and pixel thresholds on held-out normals plus labelled images",
            "n_normal": int(normal_scores.size),
            "n_labelled": int(defect_scores.size),
            "n_labelled_defective": int(labels[normal_scores.size :].sum()),
            "image_f1": image_best.f1,
            "pixel_f1": pixel_best.f1,
            "normal_only_threshold": normal_threshold(normal_scores, quantile, margin),
        },
    )
