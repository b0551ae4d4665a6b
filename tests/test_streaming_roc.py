"""The streaming pixel ROC equals the exact AUROC over all pixels at once, frame by frame (issue #12)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from models.metrics.anomaly import auroc
from models.metrics.streaming_roc import StreamingPixelRoc, float16_order_keys


def test_frame_by_frame_counts_give_the_exact_auroc_of_all_pixels_ties_included() -> None:
    rng = np.random.default_rng(0)
    heatmaps = [rng.random((20 + i, 30)).astype(np.float16) for i in range(4)]
    heatmaps[1][:5] = 0.5  # ties across and within frames
    heatmaps[2][:5] = 0.5
    masks = [rng.random(h.shape) < 0.2 for h in heatmaps]
    for heatmap, mask in zip(heatmaps, masks, strict=True):
        heatmap[mask] += np.float16(0.1)  # defects score higher, not perfectly
    roc = StreamingPixelRoc()
    for heatmap, mask in zip(heatmaps, masks, strict=True):
        roc.add(heatmap, mask)
    truth = np.concatenate([m.ravel() for m in masks])
    scores = np.concatenate([h.ravel() for h in heatmaps]).astype(np.float64)
    assert roc.auroc() == pytest.approx(auroc(truth, scores), abs=1e-12)


def test_keys_sort_like_float16_values_and_refuse_nan() -> None:
    values = np.array([-1.0, -0.0, 0.0, 1e-4, 0.5, 65504.0, -65504.0], dtype=np.float16)
    keys = float16_order_keys(values)
    assert keys[1] == keys[2]  # -0 and +0 are one value
    order = np.argsort(values.astype(np.float64), kind="stable")
    assert np.all(np.diff(keys[order].astype(np.int64)) >= 0)
    with pytest.raises(ValueError, match="NaN"):
        float16_order_keys(np.array([np.nan], dtype=np.float16))


def test_one_class_only_is_nan_and_mismatched_shapes_are_refused() -> None:
    roc = StreamingPixelRoc()
    assert math.isnan(roc.auroc())
    roc.add(np.zeros((2, 2), np.float16), np.zeros((2, 2), bool))
    assert math.isnan(roc.auroc())
    with pytest.raises(ValueError, match="differ in shape"):
        roc.add(np.zeros((2, 2), np.float16), np.zeros((2, 3), bool))
