"""The crop rule shared by training-data generation and scoring.

The detector is trained on crops made by this rule from ground-truth component masks and scores
crops made by the same rule from the segmenter's masks. If the two ever differ (another margin,
another rounding), the detector sees a different framing at scoring time than in training and
its scores drift, so keep exactly one implementation and import it from both sides.
"""

from __future__ import annotations

import numpy as np


def crop_box(
    region_mask: np.ndarray, margin_fraction: float = 0.08, min_margin: int = 16
) -> tuple[int, int, int, int] | None:
    """Bounding box of the component, expanded by a margin and clipped to the frame.

    ``margin = max(min_margin, round(margin_fraction * max(box_h, box_w)))`` pixels are added on
    every side of the tight bounding box of the non-zero pixels, then the box is clipped to the
    mask's extent. Python's ``round`` (half to even) is used, as written.

    Args:
        region_mask: 2-D array, non-zero where the component is.
        margin_fraction: margin as a fraction of the longer box side.
        min_margin: smallest margin in pixels (small parts still get some context).

    Returns:
        (y0, x0, y1, x1), half-open, or None if the mask is empty.
    """
    if region_mask.ndim != 2:
        raise ValueError(f"region_mask must be 2-D (H, W), got shape {region_mask.shape}")
    rows = np.flatnonzero(region_mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(region_mask.any(axis=0))
    y0, y1 = int(rows[0]), int(rows[-1]) + 1
    x0, x1 = int(cols[0]), int(cols[-1]) + 1
    margin = max(min_margin, round(margin_fraction * max(y1 - y0, x1 - x0)))
    h, w = region_mask.shape
    return max(0, y0 - margin), max(0, x0 - margin), min(h, y1 + margin), min(w, x1 + margin)
