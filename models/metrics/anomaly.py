"""Anomaly-detection metrics: AUROC, AUPRO, F1-max and curve points, for images and pixels.

All curves come from one descending sort of the scores and cumulative counts at the distinct score values
(tied scores form a single operating point, so AUROC equals the rank-based Mann-Whitney statistic with ties
counted one half). Nothing loops over thresholds in Python, so tens of millions of pixels are fine.

AUPRO follows the MVTec AD definition (Bergmann et al., IJCV 2021, and the evaluation code shipped with the
dataset): ground-truth regions are the 8-connected components of every test mask; at each threshold the
per-region overlap (fraction of the region's pixels at or above the threshold) is averaged over all regions of
all images, and the false-positive rate is taken over all normal pixels of all images, good images included.
PRO is integrated over FPR in ``[0, fpr_limit]`` (0.3) with the trapezoidal rule, interpolating the curve at the
limit, and divided by ``fpr_limit``. Unlike a sweep over a few hundred thresholds, every distinct score value is
an operating point here (exact, like the MVTec reference implementation's sort-based ``compute_pro``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage


def _as_binary(labels: np.ndarray) -> np.ndarray:
    return np.asarray(labels).astype(bool).ravel()


@dataclass(frozen=True)
class SortedScores:
    """Scores sorted once (descending) with the ends of each run of tied values.

    Build it once with :meth:`of` and pass it to the curve functions to avoid re-sorting millions of pixels.

    Attributes:
        order: Indices that sort the flattened scores descending.
        ends: Positions (in sorted order) of the last element of each distinct value.
        thresholds: The distinct values, descending.
    """

    order: np.ndarray
    ends: np.ndarray
    thresholds: np.ndarray

    @classmethod
    def of(cls, scores: np.ndarray) -> SortedScores:
        """Sort ``scores`` (any shape, flattened)."""
        s = np.asarray(scores).ravel()
        if s.size == 0:
            raise ValueError("no samples: pass at least one score")
        if not np.all(np.isfinite(s)):
            raise ValueError("scores contain NaN or infinity; check the model output")
        order = np.argsort(-s, kind="stable")
        sorted_scores = s[order]
        ends = np.r_[np.flatnonzero(np.diff(sorted_scores)), s.size - 1]
        return cls(order=order, ends=ends, thresholds=sorted_scores[ends].astype(np.float64))


def _sorted_counts(labels: np.ndarray, scores: np.ndarray | SortedScores) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """True/false positives at each distinct threshold (descending), and those thresholds.

    At threshold ``thresholds[i]`` (predict anomalous when ``score >= threshold``) there are ``tps[i]`` true and
    ``fps[i]`` false positives.
    """
    y = _as_binary(labels)
    ranked = scores if isinstance(scores, SortedScores) else SortedScores.of(scores)
    if y.size != ranked.order.size:
        raise ValueError(f"labels and scores differ in size ({y.size} vs {ranked.order.size})")
    tps = np.cumsum(y[ranked.order], dtype=np.float64)[ranked.ends]
    fps = (ranked.ends + 1) - tps
    return tps, fps, ranked.thresholds


def _check_both_classes(positives: float, negatives: float, what: str) -> None:
    if positives == 0 or negatives == 0:
        raise ValueError(
            f"{what} needs both normal and anomalous samples (got {int(positives)} anomalous, {int(negatives)} "
            "normal); add test/good and defective images."
        )


def roc_curve(labels: np.ndarray, scores: np.ndarray | SortedScores) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ROC curve points starting at ``(0, 0)``.

    Args:
        labels: 1/True for anomalous, any shape.
        scores: Higher means more anomalous, same size as ``labels`` (or their :class:`SortedScores`).

    Returns:
        ``(fpr, tpr, thresholds)``; ``thresholds[0]`` is ``+inf`` for the ``(0, 0)`` point.
    """
    tps, fps, thresholds = _sorted_counts(labels, scores)
    _check_both_classes(tps[-1], fps[-1], "ROC")
    fpr = np.r_[0.0, fps / fps[-1]]
    tpr = np.r_[0.0, tps / tps[-1]]
    return fpr, tpr, np.r_[np.inf, thresholds]


def auroc(labels: np.ndarray, scores: np.ndarray | SortedScores) -> float:
    """Area under the ROC curve (trapezoidal over distinct thresholds; ties count one half)."""
    fpr, tpr, _ = roc_curve(labels, scores)
    return float(np.trapezoid(tpr, fpr))


def precision_recall_curve(
    labels: np.ndarray, scores: np.ndarray | SortedScores
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Precision and recall at each distinct threshold, from the highest threshold down.

    Returns:
        ``(precision, recall, thresholds)`` (predict anomalous when ``score >= threshold``).
    """
    tps, fps, thresholds = _sorted_counts(labels, scores)
    _check_both_classes(tps[-1], fps[-1], "precision-recall")
    precision = tps / (tps + fps)
    recall = tps / tps[-1]
    return precision, recall, thresholds


@dataclass(frozen=True)
class F1Max:
    """Best F1 over thresholds and where it is reached.

    Attributes:
        f1: Maximum F1.
        threshold: Score threshold reaching it (anomalous when ``score >= threshold``).
        precision: Precision there.
        recall: Recall there.
    """

    f1: float
    threshold: float
    precision: float
    recall: float


def f1_max(labels: np.ndarray, scores: np.ndarray | SortedScores) -> F1Max:
    """Maximum F1 over all thresholds (the best-case F1 reported next to AUROC)."""
    precision, recall, thresholds = precision_recall_curve(labels, scores)
    denominator = precision + recall
    f1 = np.divide(2 * precision * recall, denominator, out=np.zeros_like(denominator), where=denominator > 0)
    best = int(np.argmax(f1))
    return F1Max(float(f1[best]), float(thresholds[best]), float(precision[best]), float(recall[best]))


def region_labels(masks: np.ndarray) -> tuple[np.ndarray, int]:
    """8-connected ground-truth regions numbered across all images.

    Args:
        masks: ``(N, H, W)`` binary masks.

    Returns:
        ``(labels, count)``: an int array shaped like ``masks`` (0 = normal, ``1..count`` = region id).
    """
    masks = np.asarray(masks).astype(bool)
    if masks.ndim != 3:
        raise ValueError(f"masks must be (N, H, W), got shape {masks.shape}")
    structure = np.ones((3, 3), dtype=bool)
    labels = np.zeros(masks.shape, dtype=np.int64)
    count = 0
    for i, mask in enumerate(masks):
        if not mask.any():
            continue
        image_labels, image_count = ndimage.label(mask, structure=structure)
        labels[i] = np.where(image_labels > 0, image_labels + count, 0)
        count += image_count
    return labels, count


def pro_curve(
    masks: np.ndarray, maps: np.ndarray, ranked: SortedScores | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-region-overlap curve: ``(fpr, pro, thresholds)`` from the highest threshold down, starting at (0, 0).

    Args:
        masks: ``(N, H, W)`` binary ground truth (good images all zero).
        maps: ``(N, H, W)`` anomaly maps at the same resolution.
        ranked: ``SortedScores.of(maps)`` when already computed.
    """
    maps = np.asarray(maps)
    if maps.shape != np.asarray(masks).shape:
        raise ValueError(f"maps {maps.shape} and masks {np.asarray(masks).shape} differ in shape")
    labels, count = region_labels(masks)
    flat_labels = labels.ravel()
    normal = flat_labels == 0
    _check_both_classes(count, normal.sum(), "PRO")
    sizes = np.bincount(flat_labels, minlength=count + 1).astype(np.float64)
    weights = np.where(normal, 0.0, 1.0 / (sizes[flat_labels] * count))
    ranked = ranked or SortedScores.of(maps)
    pro = np.cumsum(weights[ranked.order])[ranked.ends]
    fp = np.cumsum(normal[ranked.order], dtype=np.float64)[ranked.ends]
    fpr = fp / normal.sum()
    return np.r_[0.0, fpr], np.r_[0.0, np.minimum(pro, 1.0)], np.r_[np.inf, ranked.thresholds]


def aupro(masks: np.ndarray, maps: np.ndarray, fpr_limit: float = 0.3, ranked: SortedScores | None = None) -> float:
    """Normalised area under the PRO curve up to ``fpr_limit`` (1.0 is perfect).

    Args:
        masks: ``(N, H, W)`` binary ground truth.
        maps: ``(N, H, W)`` anomaly maps.
        fpr_limit: Upper end of the FPR integration range (MVTec AD uses 0.3).
        ranked: ``SortedScores.of(maps)`` when already computed.
    """
    if not 0.0 < fpr_limit <= 1.0:
        raise ValueError(f"fpr_limit must be in (0, 1], got {fpr_limit}")
    fpr, pro, _ = pro_curve(masks, maps, ranked)
    return float(_partial_area(fpr, pro, fpr_limit) / fpr_limit)


def _partial_area(x: np.ndarray, y: np.ndarray, limit: float) -> float:
    """Trapezoidal area under ``y(x)`` for ``x`` in ``[0, limit]`` (``x`` non-decreasing, linear interpolation)."""
    inside = x <= limit
    xs = x[inside]
    ys = y[inside]
    if xs[-1] < limit:
        following = np.flatnonzero(~inside)
        if following.size:
            j = following[0]
            x0, x1, y0, y1 = x[j - 1], x[j], y[j - 1], y[j]
            y_limit = y0 + (y1 - y0) * (limit - x0) / (x1 - x0) if x1 > x0 else y1
        else:
            y_limit = ys[-1]
        xs = np.r_[xs, limit]
        ys = np.r_[ys, y_limit]
    return float(np.trapezoid(ys, xs))


def downsample_curve(x: np.ndarray, y: np.ndarray, max_points: int = 512) -> tuple[list[float], list[float]]:
    """At most ``max_points`` evenly spaced (by index) points of a curve, end points kept; JSON-ready lists."""
    if x.size <= max_points:
        return x.astype(float).tolist(), y.astype(float).tolist()
    index = np.unique(np.linspace(0, x.size - 1, max_points).round().astype(np.int64))
    return x[index].astype(float).tolist(), y[index].astype(float).tolist()


def anomaly_metrics(
    image_labels: np.ndarray,
    image_scores: np.ndarray,
    masks: np.ndarray | None = None,
    maps: np.ndarray | None = None,
    fpr_limit: float = 0.3,
) -> dict[str, float]:
    """Image AUROC and F1-max, and (with masks and maps) pixel AUROC, pixel F1-max and AUPRO."""
    out = {
        "image_auroc": auroc(image_labels, image_scores),
        "image_f1_max": f1_max(image_labels, image_scores).f1,
    }
    if masks is not None and maps is not None:
        ranked = SortedScores.of(np.asarray(maps, dtype=np.float32))
        out["pixel_auroc"] = auroc(masks, ranked)
        out["pixel_f1_max"] = f1_max(masks, ranked).f1
        out["aupro"] = aupro(masks, maps, fpr_limit, ranked)
    return out
