"""A synthetic shift for the review app's benchmark and screenshots, written through ``storage/`` in seconds.

Frames come from :mod:`synth.frame` (full camera size); each is "scored" without a model: its scored box is the
component's bounding box and its heatmap, stored normalised like a detector's (0.5 = pixel threshold, 0 outside
the box), is a smoothed copy of the frame's ground-truth defect mask over a low, noisy background. The app reads
this shift exactly as it reads a scored one; only the numbers in it are made up, which the pages do not know.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.ndimage import gaussian_filter

from storage.frame_store import FrameStore
from storage.settings import Settings, load_settings
from storage.tables import MANIFEST_COLUMNS, ScoreRecord, ScoreStatus, write_manifest, write_scores
from synth.defects import DEFECT_TYPES
from synth.frame import render_frame


def _heat(region: np.ndarray, defect: np.ndarray, box: tuple[int, int, int, int], seed: int) -> np.ndarray:
    """A normalised heatmap: background 0.25-0.4 inside the box, the defect well above 0.5, 0 outside."""
    y0, x0, y1, x1 = box
    rng = np.random.default_rng(seed)
    inside = gaussian_filter(rng.random((y1 - y0, x1 - x0), dtype=np.float32), 6) * 0.6 + 0.05
    blob = gaussian_filter(defect[y0:y1, x0:x1].astype(np.float32), 6)
    if blob.max() > 0:
        inside = np.maximum(inside, 0.35 + 0.6 * blob / blob.max())
    heat = np.zeros(region.shape, dtype=np.float32)
    heat[y0:y1, x0:x1] = np.clip(inside, 0.0, 1.0)
    return heat


def _manifest_row(image_id: str, pixels: np.ndarray) -> dict:
    return {
        "image_id": image_id,
        "source_path": f"{image_id}.png",
        "sha256": "",
        "height": pixels.shape[0],
        "width": pixels.shape[1],
        "channels": pixels.shape[2],
        "dtype": str(pixels.dtype),
        "status": "ingested",
        "reason": "",
        "bytes": int(pixels.nbytes),
        "ingested_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def build_review_shift(
    home: Path, shift_id: str = "review-demo", frames: int = 6, size: tuple[int, int] = (1536, 2048)
) -> Settings:
    """Write ``frames`` synthetic frames (every other one with a defect) as an ingested and scored shift."""
    settings = load_settings(home).ensure()
    store = FrameStore(settings.store_path)
    store.ensure_shift(shift_id)
    manifest, scores = [], []
    for index in range(frames):
        defect_type = DEFECT_TYPES[index % len(DEFECT_TYPES)] if index % 2 == 0 else None
        frame = render_frame(size, (7, index), defect_type)
        image_id = f"cam1--frame_{index:05d}.png"
        ys, xs = np.nonzero(frame.region)
        box = (int(ys.min()), int(xs.min()), int(ys.max()) + 1, int(xs.max()) + 1)
        heat = _heat(frame.region, frame.defect, box, index)
        store.write_image(shift_id, image_id, frame.image, {})
        store.write_heatmap(shift_id, image_id, size, box, heat[box[0] : box[2], box[1] : box[3]], {"synthetic": 1})
        score = float(np.clip(heat.max() - 0.2, 0.0, 1.0))
        record = ScoreRecord(image_id, ScoreStatus.SCORED, "", "1", "1", score, score >= 0.5, score / 100, 0.005)
        record.y0, record.x0, record.y1, record.x1 = box
        manifest.append(_manifest_row(image_id, frame.image))
        scores.append(record.row())
    results = settings.results_dir(shift_id)
    write_manifest(results, pd.DataFrame(manifest, columns=MANIFEST_COLUMNS))
    write_scores(results, pd.DataFrame(scores))
    return settings
