"""Image and exact full-resolution pixel AUROC of a scored shift against the synthetic ground truth."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image

from benchmarks.two_stage.options import CROSS_CHECK_PIXELS
from benchmarks.two_stage.runs import Pipeline
from models.metrics.streaming_roc import StreamingPixelRoc


def read_mask(path: Path) -> np.ndarray:
    """A 0/255 mask PNG as bool."""
    with Image.open(path) as image:
        return np.asarray(image.convert("L")) > 0


def safe_auroc(truth: np.ndarray, scores: np.ndarray) -> float:
    """``models.metrics.anomaly.auroc``, NaN when one class is missing."""
    from models.metrics.anomaly import auroc

    return auroc(truth, scores) if 0 < truth.sum() < truth.size else math.nan


def evaluate(pipeline: Pipeline, paths: dict[str, Any], size: tuple[int, int]) -> dict[str, Any]:
    """Image and pixel metrics of one scored shift against the synthetic ground truth (frames of ``size``)."""
    from storage.frame_store import FrameStore
    from storage.settings import load_settings

    settings = load_settings()
    frames = labelled_frames(settings.results_dir(pipeline.shift_id), paths["labels_csv"])
    scored = (frames["status"] == "scored").to_numpy()
    truth = (frames["label"] == "defect").to_numpy()
    score = frames["score"].astype(float).to_numpy()
    raw = frames["raw_score"].astype(float).to_numpy()
    raw_floor = np.nanmin(raw[scored]) - 1.0 if scored.any() else 0.0  # below every scored frame
    store = FrameStore(settings.store_path)
    pixels = pixel_metrics(frames, scored, store, pipeline.shift_id, paths["defect_masks_dir"], size)
    counts = frames["status"].value_counts().to_dict()
    return {
        "frames": len(frames),
        "defective": int(truth.sum()),
        "status_counts": {str(k): int(v) for k, v in counts.items()},
        "not_scored": int((~scored).sum()),
        # raw scores rank the frames: the normalised score is clipped to [0, 1] and ties there lose information
        "image_auroc": safe_auroc(truth, np.where(scored, raw, raw_floor)),
        "image_auroc_scored_only": safe_auroc(truth[scored], raw[scored]),
        "image_auroc_normalised_score": safe_auroc(truth, np.where(scored, score, 0.0)),
        "pixel_auroc": pixels.auroc,
        "pixel_auroc_cross_checked": pixels.cross_checked,
        "pixels": pixels.pixels,
        "defect_pixels": pixels.defect_pixels,
    }


def labelled_frames(results: Path, labels_csv: Path) -> pd.DataFrame:
    """Every labelled frame with its manifest entry and scores; ``status`` "not ingested" where it has none.

    Frames are joined on their file name, so a frame the ingest skipped still counts (as not scored).
    """
    from storage.tables import read_manifest, read_scores

    manifest = read_manifest(results)[["image_id", "source_path"]]
    scores = read_scores(results)
    labels = pd.read_csv(labels_csv)
    frames = labels.merge(manifest, left_on="file", right_on="source_path", how="left").merge(
        scores, on="image_id", how="left"
    )
    frames["status"] = frames["status"].fillna("not ingested")
    return frames


@dataclass
class PixelMetrics:
    """Exact pixel AUROC over a shift, and what it was computed over."""

    auroc: float
    cross_checked: float | None  # models.metrics.anomaly's AUROC where small enough to compute, else None
    pixels: int
    defect_pixels: int


def pixel_metrics(
    frames: pd.DataFrame,
    scored: np.ndarray,
    store: Any,
    shift_id: str,
    masks_dir: Path,
    size: tuple[int, int],
) -> PixelMetrics:
    """Pixel AUROC at full resolution, accumulated frame by frame so memory stays at one frame.

    A frame that was not scored gets an all-zero heatmap: the pipeline reports no anomalous pixel for it.
    """
    roc = StreamingPixelRoc()
    keep_for_check: list[tuple[np.ndarray, np.ndarray]] = []
    total_pixels = len(frames) * size[0] * size[1]
    check = total_pixels <= CROSS_CHECK_PIXELS
    for row, is_scored in zip(frames.itertuples(index=False), scored, strict=True):
        mask = read_mask(masks_dir / row.file)
        heatmap = store.heatmap(shift_id, row.image_id)[...] if is_scored else None
        if heatmap is None:  # not scored: the pipeline reports no anomalous pixel
            heatmap = np.zeros(mask.shape, dtype=np.float16)
        if heatmap.shape != mask.shape:
            raise ValueError(f"{row.file}: heatmap {heatmap.shape} and mask {mask.shape} differ in shape")
        roc.add(heatmap, mask)
        if check:
            keep_for_check.append((mask.ravel(), heatmap.astype(np.float32).ravel()))
    pixel_auroc = roc.auroc()
    checked = cross_check(pixel_auroc, keep_for_check) if check and keep_for_check else None
    return PixelMetrics(pixel_auroc, checked, total_pixels, int(roc.positives.sum()))


def cross_check(pixel_auroc: float, kept: list[tuple[np.ndarray, np.ndarray]]) -> float:
    """The AUROC by ``models.metrics.anomaly`` over the kept (mask, heatmap) pairs, which must agree.

    Raises:
        AssertionError: When the streaming AUROC differs from it by more than 1e-9.
    """
    reference = safe_auroc(np.concatenate([m for m, _ in kept]), np.concatenate([h for _, h in kept]))
    if not (math.isnan(reference) and math.isnan(pixel_auroc)) and abs(reference - pixel_auroc) > 1e-9:
        raise AssertionError(f"pixel AUROC {pixel_auroc} differs from models.metrics.anomaly {reference}")
    return reference
