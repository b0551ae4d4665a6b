"""Task: score a batch of frames: read from zarr, segment, crop, detect, paste the heatmap back, write it.

The task holds full-resolution frames and heatmaps only while it works on them and returns small records. Each
finished batch is also written as a part table next to the shift's scores, so a worker or flow that dies later
loses nothing that was finished.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from prefect import task

from models.cropping import Box, crop_region
from models.detector.inference import resize_map, score_crops
from models.segmentation.inference import predict_masks
from storage.frame_store import FrameStore
from storage.tables import SCORE_COLUMNS, ScoreRecord, ScoreStatus, write_table
from tasks.model_cache import ModelRef, compute_device, get_detector, get_model

PARTS_DIR = "scores.parts"


def _record(image_id: str, status: ScoreStatus, reason: str, refs: tuple[ModelRef | None, ModelRef]) -> dict[str, Any]:
    segmenter, detector = refs
    return ScoreRecord(image_id, status, reason, segmenter.version if segmenter else None, detector.version).row()


def component_regions(
    frames: dict[str, np.ndarray], segmenter: ModelRef | None, device: torch.device
) -> dict[str, tuple[Box | None, str]]:
    """Scored region per frame: the segmented component (two-stage) or the whole frame (one-stage)."""
    if segmenter is None:
        return {image_id: (Box(0, 0, f.shape[0], f.shape[1]), "") for image_id, f in frames.items()}
    model, _, _ = get_model(segmenter)
    ids = list(frames)
    masks = predict_masks(model, [frames[i] for i in ids], device=device)
    regions: dict[str, tuple[Box | None, str]] = {}
    for image_id, mask in zip(ids, masks, strict=True):
        region = crop_region(mask, frames[image_id].shape[:2])
        regions[image_id] = (region.box, region.reason)
    return regions


@task(name="score-frames", retries=2, retry_delay_seconds=5)
def score_frames(
    store_path: str,
    results_dir: str,
    shift_id: str,
    image_ids: list[str],
    segmenter: ModelRef | None,
    detector: ModelRef,
    batch_size: int = 16,
) -> list[dict[str, Any]]:
    """Score ``image_ids`` of a shift; one record per frame (``scored``, ``no_component`` or ``failed``).

    Args:
        store_path: The workspace's ``store.zarr``.
        results_dir: The shift's results folder (part tables go to ``scores.parts/``).
        shift_id: The shift.
        image_ids: Frames of this batch.
        segmenter: Stage-1 model, or ``None`` to score whole frames (one-stage).
        detector: Stage-2 model with its calibration.
        batch_size: Crops per detector forward pass.
    """
    device = compute_device()
    store = FrameStore(store_path)
    refs = (segmenter, detector)
    records: dict[str, dict[str, Any]] = {}
    frames: dict[str, np.ndarray] = {}
    for image_id in image_ids:
        try:
            frames[image_id] = store.read_image(shift_id, image_id)
        except Exception as error:  # an unreadable chunk fails this frame, not the batch
            records[image_id] = _record(
                image_id, ScoreStatus.FAILED, f"cannot read frame: {type(error).__name__}: {error}", refs
            )

    regions = component_regions(frames, segmenter, device) if frames else {}
    crops: list[np.ndarray] = []
    cropped: list[tuple[str, Box]] = []
    for image_id, (box, reason) in regions.items():
        if box is None:
            records[image_id] = _record(image_id, ScoreStatus.NO_COMPONENT, reason or "no component found", refs)
            store.write_heatmap(
                shift_id, image_id, frames[image_id].shape[:2], None, None, {"status": str(ScoreStatus.NO_COMPONENT)}
            )
            continue
        crops.append(frames[image_id][box.y0 : box.y1, box.x0 : box.x1])
        cropped.append((image_id, box))

    if crops:
        model, calibration, _ = get_detector(detector)
        if calibration is None:
            raise ValueError(f"detector {detector.uri} has no calibration; retrain it with 'defectflow train detector'")
        result = score_crops(model, crops, calibration, batch_size=batch_size, autocast=device.type == "cuda")
        for index, (image_id, box) in enumerate(cropped):
            heatmap = resize_map(result.maps[index], (box.y1 - box.y0, box.x1 - box.x0))
            store.write_heatmap(
                shift_id,
                image_id,
                frames[image_id].shape[:2],
                (box.y0, box.x0, box.y1, box.x1),
                heatmap,
                {"detector_version": detector.version, "values": "normalised pixel score, 0.5 = pixel threshold"},
            )
            record = _record(image_id, ScoreStatus.SCORED, "", refs)
            record.update(
                score=float(result.scores[index]),
                is_anomalous=bool(result.anomalous[index]),
                raw_score=float(result.raw_scores[index]),
                threshold=float(calibration.image_threshold),
                y0=box.y0,
                x0=box.x0,
                y1=box.y1,
                x1=box.x1,
            )
            records[image_id] = record
    rows = [records[image_id] for image_id in image_ids]
    parts = Path(results_dir) / PARTS_DIR
    write_table(pd.DataFrame(rows, columns=SCORE_COLUMNS), parts / f"{uuid.uuid4().hex}.parquet")
    return rows
