"""Task: overlay pictures of scored frames for the report and MLflow: the frame, the heatmap in the colour map, and
the pixel-threshold contour side by side (drawn by :mod:`storage.overlay`, as in the review app).

The scoring batches draw their flagged frames' overlays themselves while frame and heatmap are in memory
(:mod:`tasks.score_batch`); this task draws the rest the report shows, reading both from the store."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from prefect import task

from storage.frame_store import FrameStore
from storage.overlay import side_by_side

OVERLAY_HEIGHT = 320


def overlay_image(frame: np.ndarray, heatmap: np.ndarray, box: tuple[int, int, int, int] | None) -> Image.Image:
    """Frame with the scored box | the box's heatmap in the colour map | the box with the contour at 0.5."""
    return side_by_side(frame, heatmap, box, height=OVERLAY_HEIGHT)


def write_overlay(
    frame: np.ndarray, heatmap: np.ndarray, box: tuple[int, int, int, int] | None, folder: Path, image_id: str
) -> str:
    """Write the overlay of one frame as ``<image_id>.jpg`` in ``folder`` (created when missing); returns its path."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{image_id}.jpg"
    overlay_image(frame, heatmap, box).save(path, quality=88)
    return str(path)


@task(name="render-overlays", retries=1)
def render_overlays(store_path: str, shift_id: str, records: list[dict[str, Any]], out_dir: str) -> list[str]:
    """Write one ``<image_id>.jpg`` overlay per record into ``out_dir``; returns the file paths."""
    store = FrameStore(store_path)
    folder = Path(out_dir)
    written: list[str] = []
    for record in records:
        image_id = record["image_id"]
        frame = store.read_image(shift_id, image_id)
        heatmap = store.heatmap(shift_id, image_id)[...]
        box = None
        if record.get("y0") is not None and record["y0"] == record["y0"]:
            box = (int(record["y0"]), int(record["x0"]), int(record["y1"]), int(record["x1"]))
        written.append(write_overlay(frame, heatmap, box, folder, image_id))
    return written
