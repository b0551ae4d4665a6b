"""Task: score a batch of frames: read from zarr, segment, crop, detect, paste the heatmap back, write it.

The task is defined here and does its work in :mod:`tasks.score_batch`, imported inside the task's body: the flow
process imports this module to submit the task, and must not import torch for it (docs/architecture.md). Only
the Dask workers that run the task import the models.
"""

from __future__ import annotations

from pathlib import Path

from prefect import task

from tasks.model_ref import ModelRef
from tasks.scoring_phases import ScoredBatch


@task(name="score-frames", retries=2, retry_delay_seconds=5)
def score_frames(
    store_path: str,
    results_dir: str,
    shift_id: str,
    image_ids: list[str],
    segmenter: ModelRef | None,
    detector: ModelRef,
    batch_size: int = 16,
    overlay_dir: str | None = None,
    max_overlays: int = 0,
) -> ScoredBatch:
    """Score ``image_ids`` of a shift; one record per frame (``scored``, ``no_component`` or ``failed``).

    Records also go to a part of the shift's scores (:mod:`storage.score_parts`), so a worker or flow that dies
    later loses nothing that was finished.

    Args:
        store_path: The workspace's ``store.zarr``.
        results_dir: The shift's results folder.
        shift_id: The shift.
        image_ids: Frames of this batch.
        segmenter: Stage-1 model, or ``None`` to score whole frames (one-stage).
        detector: Stage-2 model with its calibration.
        batch_size: Crops per detector forward pass.
        overlay_dir: Folder for the report's overlays of flagged frames, drawn here while the frame and its heatmap
            are in memory; ``None`` draws none.
        max_overlays: At most this many overlays from this batch (the flow shares the report's limit out).

    Returns:
        The records, the seconds the batch spent per phase (:mod:`tasks.scoring_phases`) and the overlays drawn.
    """
    from tasks.score_batch import FlaggedOverlays, score_batch

    overlays = FlaggedOverlays(Path(overlay_dir), max_overlays) if overlay_dir and max_overlays > 0 else None
    return score_batch(store_path, results_dir, shift_id, image_ids, (segmenter, detector), batch_size, overlays)
