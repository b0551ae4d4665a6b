"""Task: small overlay pictures of scored frames (frame, heatmap, scored box) for the report and MLflow."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw
from prefect import task

from storage.frame_store import FrameStore

OVERLAY_LONG_SIDE = 640


def _to_rgb8(frame: np.ndarray) -> np.ndarray:
    if frame.ndim == 2:
        frame = frame[..., None]
    if frame.dtype == np.uint16:
        frame = (frame / 257).astype(np.uint8)
    elif frame.dtype != np.uint8:  # floats in [0, 1]
        frame = (np.clip(frame, 0.0, 1.0) * 255).round().astype(np.uint8)
    if frame.shape[-1] == 1:
        frame = np.repeat(frame, 3, axis=-1)
    return frame


def overlay_image(frame: np.ndarray, heatmap: np.ndarray, box: tuple[int, int, int, int] | None) -> Image.Image:
    """The frame with the heatmap in red where it exceeds 0.5 and the scored box outlined, downscaled."""
    scale = OVERLAY_LONG_SIDE / max(frame.shape[:2])
    size = (max(1, round(frame.shape[1] * scale)), max(1, round(frame.shape[0] * scale)))
    base = Image.fromarray(_to_rgb8(frame)).resize(size, Image.Resampling.BILINEAR)
    heat = np.asarray(Image.fromarray(np.asarray(heatmap, dtype=np.float32)).resize(size, Image.Resampling.BILINEAR))
    alpha = np.clip((heat - 0.3) / 0.4, 0.0, 1.0)[..., None] * 0.6
    red = np.zeros((*heat.shape, 3), dtype=np.float32)
    red[..., 0] = 255
    blended = (np.asarray(base, dtype=np.float32) * (1 - alpha) + red * alpha).astype(np.uint8)
    image = Image.fromarray(blended)
    if box is not None:
        y0, x0, y1, x1 = (round(v * scale) for v in box)
        ImageDraw.Draw(image).rectangle([x0, y0, x1 - 1, y1 - 1], outline=(255, 220, 0), width=2)
    return image


@task(name="render-overlays", retries=1)
def render_overlays(store_path: str, shift_id: str, records: list[dict[str, Any]], out_dir: str) -> list[str]:
    """Write one ``<image_id>.jpg`` overlay per record into ``out_dir``; returns the file paths."""
    store = FrameStore(store_path)
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    written: list[str] = []
    for record in records:
        image_id = record["image_id"]
        frame = store.read_image(shift_id, image_id)
        heatmap = store.heatmap(shift_id, image_id)[...]
        box = None
        if record.get("y0") is not None and record["y0"] == record["y0"]:
            box = (int(record["y0"]), int(record["x0"]), int(record["y1"]), int(record["x1"]))
        path = folder / f"{image_id}.jpg"
        overlay_image(frame, heatmap, box).save(path, quality=88)
        written.append(str(path))
    return written
