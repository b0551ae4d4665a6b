"""Exact pixel AUROC over many full-resolution float16 heatmaps, in memory that does not grow with their number.

A shift's heatmaps are stored as float16, which has 65,536 bit patterns: counting defect and normal pixels per
value gives the exact ROC of all pixels together (ties included) without keeping any pixel, so frames of any size
and number can be evaluated one at a time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

#: One bin per float16 bit pattern.
ROC_BINS = 1 << 16


def float16_order_keys(heatmap: np.ndarray) -> np.ndarray:
    """uint16 keys that sort like the float16 values (equal values, -0 and +0 included, share one key).

    Raises:
        ValueError: On NaN in the heatmap (a broken model output must not be ranked silently).
    """
    values = np.asarray(heatmap, dtype=np.float16) + np.float16(0)  # -0 + 0 = +0
    if np.isnan(values).any():
        raise ValueError("heatmap contains NaN; a model gave non-finite output, which cannot be ranked")
    bits = values.view(np.uint16)
    return np.where(bits >= 0x8000, 0xFFFF - bits, bits | 0x8000).astype(np.uint16)


@dataclass
class StreamingPixelRoc:
    """Exact pixel ROC of float16 heatmaps: defect and normal pixel counts per value, summed over frames."""

    positives: np.ndarray = field(default_factory=lambda: np.zeros(ROC_BINS, dtype=np.int64))
    negatives: np.ndarray = field(default_factory=lambda: np.zeros(ROC_BINS, dtype=np.int64))

    def add(self, heatmap: np.ndarray, mask: np.ndarray) -> None:
        """Count one frame's pixels (``mask`` true = defect; same shape as ``heatmap``)."""
        if np.shape(heatmap) != np.shape(mask):
            raise ValueError(f"heatmap {np.shape(heatmap)} and mask {np.shape(mask)} differ in shape")
        keys = float16_order_keys(heatmap).ravel()
        defect = np.asarray(mask, dtype=bool).ravel()
        self.positives += np.bincount(keys[defect], minlength=ROC_BINS)
        self.negatives += np.bincount(keys[~defect], minlength=ROC_BINS)

    def auroc(self) -> float:
        """Trapezoidal AUROC over the distinct values, descending (ties one half); NaN without both classes."""
        positives, negatives = self.positives[::-1], self.negatives[::-1]
        present = (positives + negatives) > 0
        if not present.any():
            return math.nan
        tps = np.cumsum(positives, dtype=np.float64)[present]
        fps = np.cumsum(negatives, dtype=np.float64)[present]
        if tps[-1] == 0 or fps[-1] == 0:
            return math.nan
        return float(np.trapezoid(np.r_[0.0, tps / tps[-1]], np.r_[0.0, fps / fps[-1]]))
