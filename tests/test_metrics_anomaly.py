"""Anomaly metrics against hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest

from models.metrics.anomaly import (
    SortedScores,
    anomaly_metrics,
    aupro,
    auroc,
    f1_max,
    pro_curve,
    region_labels,
    roc_curve,
)


def test_auroc_perfect_inverted_constant() -> None:
    labels = np.array([0, 0, 0, 1, 1])
    assert auroc(labels, np.array([0.1, 0.2, 0.3, 0.8, 0.9])) == pytest.approx(1.0)
    assert auroc(labels, np.array([0.9, 0.8, 0.7, 0.2, 0.1])) == pytest.approx(0.0)
    assert auroc(labels, np.full(5, 0.4)) == pytest.approx(0.5)


def test_auroc_ties_count_half() -> None:
    # pairs (pos, neg): (0.5 vs 0.5) tie -> 1/2, (0.5 vs 0.1) -> 1, (0.9 vs both) -> 2: (0.5 + 1 + 2) / 4
    assert auroc(np.array([1, 1, 0, 0]), np.array([0.9, 0.5, 0.5, 0.1])) == pytest.approx(3.5 / 4)


def test_auroc_matches_mann_whitney_on_random_data() -> None:
    rng = np.random.default_rng(0)
    labels = rng.random(500) < 0.3
    scores = np.round(rng.random(500) + 0.3 * labels, 1)  # many ties
    pos, neg = scores[labels], scores[~labels]
    expected = ((pos[:, None] > neg[None]).sum() + 0.5 * (pos[:, None] == neg[None]).sum()) / (pos.size * neg.size)
    assert auroc(labels, scores) == pytest.approx(expected)


def test_roc_curve_end_points_and_sorted_scores_reuse() -> None:
    labels = np.array([0, 1, 0, 1])
    scores = np.array([0.1, 0.3, 0.35, 0.8])
    fpr, tpr, thresholds = roc_curve(labels, scores)
    assert (fpr[0], tpr[0], fpr[-1], tpr[-1]) == (0.0, 0.0, 1.0, 1.0)
    assert np.isinf(thresholds[0])
    assert auroc(labels, SortedScores.of(scores)) == pytest.approx(auroc(labels, scores)) == pytest.approx(0.75)


def test_auroc_needs_both_classes() -> None:
    with pytest.raises(ValueError, match="both normal and anomalous"):
        auroc(np.zeros(4), np.arange(4.0))


def test_f1_max_hand_case() -> None:
    # thresholds 0.9: P=1 R=1/3 F1=.5 | 0.8: P=1 R=2/3 F1=.8 | 0.7: F1=2/3 | 0.6: F1=4/7 | 0.1: P=3/5 R=1 F1=.75
    best = f1_max(np.array([1, 1, 0, 0, 1]), np.array([0.9, 0.8, 0.7, 0.6, 0.1]))
    assert best.f1 == pytest.approx(0.8)
    assert best.threshold == pytest.approx(0.8)
    assert (best.precision, best.recall) == (pytest.approx(1.0), pytest.approx(2 / 3))


def _normal_scores(count: int) -> np.ndarray:
    """Distinct normal-pixel scores evenly spread in (0, 1): FPR at threshold t is the share above t."""
    return (np.arange(count) + 0.5) / count


def test_aupro_single_region_jump_at_known_fpr() -> None:
    # One 10x10 region in a 100x100 image plus a good 100x100 image: 19 900 normal pixels with distinct scores.
    masks = np.zeros((2, 100, 100), dtype=bool)
    masks[0, 20:30, 40:50] = True
    normal = _normal_scores(int((~masks).sum()))
    maps = np.zeros(masks.shape)
    maps[~masks] = np.random.default_rng(0).permutation(normal)
    # every region pixel scores just above 90 % of the normal pixels: PRO jumps 0 -> 1 at FPR 0.1.
    maps[masks] = np.quantile(normal, 0.9) + 1e-9
    fpr, pro, _ = pro_curve(masks, maps)
    assert pro[fpr < 0.0999].max() == 0.0
    assert pro[fpr >= 0.1001].min() == pytest.approx(1.0)
    # area = (0.3 - 0.1) * 1, normalised by 0.3
    assert aupro(masks, maps) == pytest.approx(2 / 3, abs=1e-3)


def test_aupro_averages_regions_not_pixels() -> None:
    # Region A (100 px) detected from FPR 0.1, region B (25 px, other image) from FPR 0.2:
    # PRO = 0.5 on [0.1, 0.2), 1 on [0.2, 0.3]: area 0.05 + 0.1 = 0.15 -> 0.5 (pixel-weighted would differ).
    masks = np.zeros((2, 100, 100), dtype=bool)
    masks[0, 10:20, 10:20] = True
    masks[1, 50:55, 50:55] = True
    normal = _normal_scores(int((~masks).sum()))
    maps = np.zeros(masks.shape)
    maps[~masks] = np.random.default_rng(1).permutation(normal)
    region_a = np.zeros_like(masks)
    region_a[0] = masks[0]
    maps[region_a] = np.quantile(normal, 0.9) + 1e-9
    maps[masks & ~region_a] = np.quantile(normal, 0.8) + 1e-9
    assert aupro(masks, maps) == pytest.approx(0.5, abs=1e-3)
    assert aupro(masks, maps, fpr_limit=0.2) == pytest.approx(0.05 / 0.2, abs=1e-3)


def test_aupro_perfect_and_region_labels() -> None:
    masks = np.zeros((3, 16, 16), dtype=bool)
    masks[0, 2:4, 2:4] = True
    masks[0, 10:12, 10:12] = True  # separate region, same image
    masks[1, 5, 5] = masks[1, 6, 6] = True  # diagonal neighbours: one region with 8-connectivity
    _, count = region_labels(masks)
    assert count == 3
    assert aupro(masks, masks.astype(float)) == pytest.approx(1.0)


def test_anomaly_metrics_large_pixel_arrays_are_fast() -> None:
    rng = np.random.default_rng(0)
    masks = np.zeros((32, 256, 256), dtype=bool)
    masks[:16, 100:140, 60:90] = True
    maps = rng.random(masks.shape, dtype=np.float32) + 0.5 * masks
    labels = masks.reshape(32, -1).any(1)
    out = anomaly_metrics(labels, maps.reshape(32, -1).max(1), masks, maps)
    assert set(out) == {"image_auroc", "image_f1_max", "pixel_auroc", "pixel_f1_max", "aupro"}
    assert 0.5 < out["pixel_auroc"] < 1.0
