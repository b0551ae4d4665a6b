"""The rule an export must pass before it is registered: it scores like the torch detector.

Exporters can change what a model computes (anomalib's users report ONNX exports that disagree with torch, its
issues 2303, 2448 and 2483: resize modes, normalisation folded in twice, smoothing lost). So both runtimes score
the same crops through the same code (:func:`models.detector.inference.score_crops`) and the export is accepted
only when

* the largest absolute difference between the raw anomaly maps is at most :data:`MAP_TOLERANCE` (raw map units,
  cosine distances in ``[0, 2]``), and
* every image decision (raw score against the calibration's image threshold) is the same.

The image score is the map's maximum, so the map bound bounds the score difference too. Float32 reorderings
between the runtimes measure around 1e-6 here (docs/scoring.md); a lost smoothing or a changed weight is orders of
magnitude above the bound.

The crops are deterministic synthetic ones at the package's size (:func:`agreement_crops`): packages do not
record which images calibrated them, so the check cannot rerun those.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from models.detector.calibration import Calibration
from models.detector.inference import score_crops
from models.model_kinds import AnomalyDetector

#: Largest accepted absolute difference between torch's and the export's raw anomaly maps.
MAP_TOLERANCE = 1e-4
#: How many crops the export check scores.
AGREEMENT_CROPS = 16
CROP_SOURCE = "deterministic synthetic crops (models.detector.export_agreement.agreement_crops, seed 0)"


def agreement_crops(image_size: int, count: int = AGREEMENT_CROPS, seed: int = 0) -> list[np.ndarray]:
    """``count`` uint8 RGB crops ``(S, S, 3)``, the same on every machine: smooth shading, stripes and blobs with
    and without noise and a bright or dark spot, so maps are not flat and scores spread."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:image_size, 0:image_size] / image_size
    crops = []
    for index in range(count):
        base = 0.3 + 0.4 * (x * np.cos(index) + y * np.sin(index)) % 1.0
        stripes = 0.1 * np.sin(2 * np.pi * (3 + index % 5) * (x if index % 2 else y))
        image = np.stack([base + stripes * (1 + c) / 3 for c in range(3)], axis=-1)
        image += rng.normal(0.0, 0.02 * (index % 4), image.shape)
        if index % 3:
            cy, cx = rng.uniform(0.2, 0.8, 2)
            radius = rng.uniform(0.03, 0.12)
            spot = ((y - cy) ** 2 + (x - cx) ** 2) < radius**2
            image[spot] = 1.0 if index % 3 == 1 else 0.0
        crops.append((np.clip(image, 0.0, 1.0) * 255).astype(np.uint8))
    return crops


@dataclass
class Agreement:
    """How closely an export scored like torch on the check's crops.

    Attributes:
        crops: How many crops were scored.
        crop_source: Which crops.
        max_map_difference: Largest absolute raw-map difference.
        max_score_difference: Largest absolute raw image-score difference.
        tolerance: The accepted map difference.
        threshold: The calibration's image threshold the decisions were taken at.
        anomalous: Crops torch decided anomalous.
        differing_decisions: Crops whose decision differs between the runtimes.
    """

    crops: int
    crop_source: str
    max_map_difference: float
    max_score_difference: float
    tolerance: float
    threshold: float
    anomalous: int
    differing_decisions: int

    def problem(self) -> str | None:
        """Why the export must not be used, or ``None`` when it agrees."""
        reasons = []
        if not self.max_map_difference <= self.tolerance:  # NaN fails too
            reasons.append(f"maps differ by up to {self.max_map_difference:.3g} (tolerance {self.tolerance:g})")
        if self.differing_decisions:
            reasons.append(f"{self.differing_decisions} of {self.crops} image decisions differ")
        return "; ".join(reasons) or None

    def to_dict(self) -> dict[str, object]:
        """JSON-ready figures."""
        return asdict(self)


def compare_runtimes(
    reference: AnomalyDetector,
    candidate: AnomalyDetector,
    calibration: Calibration,
    crops: Sequence[np.ndarray],
    crop_source: str = CROP_SOURCE,
    tolerance: float = MAP_TOLERANCE,
) -> Agreement:
    """Score ``crops`` with both detectors through the scoring code and compare maps and decisions."""
    expected = score_crops(reference, crops, calibration)
    actual = score_crops(candidate, crops, calibration)
    assert expected.anomalous is not None and actual.anomalous is not None
    return Agreement(
        crops=len(crops),
        crop_source=crop_source,
        max_map_difference=float(np.max(np.abs(expected.raw_maps - actual.raw_maps))),
        max_score_difference=float(np.max(np.abs(expected.raw_scores - actual.raw_scores))),
        tolerance=tolerance,
        threshold=float(calibration.image_threshold),
        anomalous=int(expected.anomalous.sum()),
        differing_decisions=int((expected.anomalous != actual.anomalous).sum()),
    )
