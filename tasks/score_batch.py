"""The work of the scoring task on a worker: read, segment, crop, detect, paste and write one batch of frames.

The task holds full-resolution frames and heatmaps only while it works on them and returns small records. Imports
torch and the models; only the task's body (:mod:`tasks.score_frames`) and the bare path of
``benchmarks/scoring.py`` import it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from models.cropping import Box, crop_image, crop_region
from models.detector.inference import resize_map, score_crops
from models.detector.onnx_runtime import OnnxDetector
from models.segmentation.inference import predict_masks
from storage.frame_store import FrameStore
from storage.score_parts import write_score_part
from storage.tables import ScoreRecord, ScoreStatus
from tasks.model_cache import compute_device, get_detector, get_model
from tasks.model_ref import ModelRef
from tasks.render_overlays import write_overlay
from tasks.scoring_phases import PhaseClock, ScoredBatch

Refs = tuple[ModelRef | None, ModelRef]
logger = logging.getLogger(__name__)


@dataclass
class FlaggedOverlays:
    """Overlays of a batch's flagged frames, drawn while the frame and its heatmap are in memory, at most ``limit``.

    Reading both back for the report's overlays cost more than drawing them (31 ms a frame of 2048 x 1536). A
    picture that cannot be written costs the picture, not the frame's score: the flow's finish draws what is missing.
    """

    folder: Path
    limit: int
    written: list[str] = field(default_factory=list)

    def draw(self, frame: np.ndarray, heatmap: np.ndarray, box: tuple[int, int, int, int], image_id: str) -> None:
        """Write the overlay of a flagged frame, unless the batch has drawn its ``limit``."""
        if len(self.written) >= self.limit:
            return
        try:
            self.written.append(write_overlay(frame, heatmap, box, self.folder, image_id))
        except Exception as error:
            logger.warning(
                "overlay of %s not drawn (%s: %s); the run's finish draws it", image_id, type(error).__name__, error
            )


def _record(image_id: str, status: ScoreStatus, reason: str, refs: Refs) -> dict[str, Any]:
    segmenter, detector = refs
    return ScoreRecord(image_id, status, reason, segmenter.version if segmenter else None, detector.version).row()


def component_regions(
    frames: dict[str, np.ndarray], segmenter: ModelRef | None, device: torch.device, clock: PhaseClock | None = None
) -> dict[str, tuple[Box | None, str]]:
    """Scored region per frame: the segmented component (two-stage) or the whole frame (one-stage)."""
    clock = clock or PhaseClock()
    if segmenter is None:
        return {image_id: (Box(0, 0, f.shape[0], f.shape[1]), "") for image_id, f in frames.items()}
    with clock("models"):
        model, _, _ = get_model(segmenter)
    ids = list(frames)
    with clock("segment"):
        masks = predict_masks(model, [frames[i] for i in ids], device=device)
    regions: dict[str, tuple[Box | None, str]] = {}
    with clock("crop"):
        for image_id, mask in zip(ids, masks, strict=True):
            region = crop_region(mask, frames[image_id].shape[:2])
            regions[image_id] = (region.box, region.reason)
    return regions


def _read_frames(
    store: FrameStore, shift_id: str, image_ids: list[str], refs: Refs, records: dict[str, dict[str, Any]]
) -> dict[str, np.ndarray]:
    """The batch's frames; an unreadable chunk fails its frame (a record in ``records``), not the batch."""
    frames: dict[str, np.ndarray] = {}
    for image_id in image_ids:
        try:
            frames[image_id] = store.read_image(shift_id, image_id)
        except Exception as error:
            reason = f"cannot read frame: {type(error).__name__}: {error}"
            records[image_id] = _record(image_id, ScoreStatus.FAILED, reason, refs)
    return frames


def _crop(
    store: FrameStore,
    shift_id: str,
    frames: dict[str, np.ndarray],
    regions: dict[str, tuple[Box | None, str]],
    refs: Refs,
    records: dict[str, dict[str, Any]],
) -> tuple[list[np.ndarray], list[tuple[str, Box]]]:
    """Crops of the frames with a component; a frame without one gets its record and an empty heatmap."""
    crops: list[np.ndarray] = []
    cropped: list[tuple[str, Box]] = []
    for image_id, (box, reason) in regions.items():
        if box is None:
            records[image_id] = _record(image_id, ScoreStatus.NO_COMPONENT, reason or "no component found", refs)
            attributes = {"status": str(ScoreStatus.NO_COMPONENT)}
            store.write_heatmap(shift_id, image_id, frames[image_id].shape[:2], None, None, attributes)
            continue
        crops.append(crop_image(frames[image_id], box))
        cropped.append((image_id, box))
    return crops, cropped


def _detect(
    store: FrameStore,
    shift_id: str,
    frames: dict[str, np.ndarray],
    crops: tuple[list[np.ndarray], list[tuple[str, Box]]],
    refs: Refs,
    batch_size: int,
    clock: PhaseClock,
    overlays: FlaggedOverlays | None,
) -> dict[str, dict[str, Any]]:
    """Score the crops, paste each map into its frame's heatmap and write it (and the overlay of a flagged frame);
    the scored records."""
    detector = refs[1]
    with clock("models"):
        model, calibration, _ = get_detector(detector)
    if calibration is None:
        raise ValueError(f"detector {detector.uri} has no calibration; retrain it with 'defectflow train detector'")
    device = compute_device().type
    with clock("detect"):
        result = score_crops(model, crops[0], calibration, batch_size=batch_size, autocast=device == "cuda")
    attributes = {"detector_version": detector.version, "values": "normalised pixel score, 0.5 = pixel threshold"}
    runtime = f"{'onnx' if isinstance(model, OnnxDetector) else 'torch'}-{device}"  # what computed the maps
    records: dict[str, dict[str, Any]] = {}
    for index, (image_id, box) in enumerate(crops[1]):
        with clock("paste"):
            heatmap = resize_map(result.maps[index], (box.y1 - box.y0, box.x1 - box.x0))
        with clock("write"):
            corners = (box.y0, box.x0, box.y1, box.x1)
            full = store.write_heatmap(shift_id, image_id, frames[image_id].shape[:2], corners, heatmap, attributes)
        record = _record(image_id, ScoreStatus.SCORED, "", refs)
        record.update(
            score=float(result.scores[index]),
            is_anomalous=bool(result.anomalous[index]),
            raw_score=float(result.raw_scores[index]),
            threshold=float(calibration.image_threshold),
            detector_runtime=runtime,
            **dict(zip(("y0", "x0", "y1", "x1"), corners, strict=True)),
        )
        records[image_id] = record
        if overlays is not None and record["is_anomalous"]:
            with clock("overlay"):
                overlays.draw(frames[image_id], full, corners, image_id)
    return records


def score_batch(
    store_path: str,
    results_dir: str,
    shift_id: str,
    image_ids: list[str],
    refs: Refs,
    batch_size: int = 16,
    overlays: FlaggedOverlays | None = None,
) -> ScoredBatch:
    """Score ``image_ids`` of a shift and write their records as a part of the shift's scores
    (:mod:`storage.score_parts`) in ``results_dir``, and the overlays of flagged frames if ``overlays`` is given.

    See :func:`tasks.score_frames.score_frames`, whose body this is.
    """
    clock = PhaseClock()
    with clock("models"):
        device = compute_device()
    store = FrameStore(store_path)
    records: dict[str, dict[str, Any]] = {}
    with clock("read"):
        frames = _read_frames(store, shift_id, image_ids, refs, records)
    regions = component_regions(frames, refs[0], device, clock) if frames else {}
    with clock("crop"):
        crops = _crop(store, shift_id, frames, regions, refs, records)
    if crops[0]:
        records.update(_detect(store, shift_id, frames, crops, refs, batch_size, clock, overlays))
    rows = [records[image_id] for image_id in image_ids]
    with clock("write"):
        write_score_part(Path(results_dir), rows)
    return ScoredBatch(rows, clock.seconds, overlays.written if overlays else [])
