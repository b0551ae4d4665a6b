"""Task: the image AUROC of detectors on the frames operators reviewed, scored the way a shift is scored.

The fixed evaluation set says how a model does on the data it was built for; the reviewed frames say how it does
on the plant's own recent defects and false alarms. Each frame goes the scoring path (read from zarr, segment with
the champion segmenter, crop, detect: :mod:`tasks.score_frames`), so the numbers are those a shift would get.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from prefect import task

from models.cropping import crop_image
from models.detector.inference import score_crops
from models.metrics.anomaly import auroc
from storage.frame_store import FrameStore
from storage.settings import load_settings
from tasks.model_cache import compute_device, get_model
from tasks.model_ref import ModelRef, pin_model
from tasks.score_batch import component_regions

#: A reviewed frame: shift id, image id, and whether its latest verdict is ``defect``.
ReviewedFrame = tuple[str, str, bool]


@dataclass
class _Scored:
    """Raw scores per detector of the frames that could be scored, their labels, and what was skipped."""

    labels: list[bool] = field(default_factory=list)
    raw: dict[str, list[float]] = field(default_factory=dict)
    unreadable: int = 0
    no_component: int = 0


def _score_chunk(
    store: FrameStore, chunk: list[ReviewedFrame], segmenter: ModelRef, detectors: dict[str, ModelRef], out: _Scored
) -> None:
    """Read, segment, crop and score one chunk of reviewed frames with every detector."""
    frames, labels = {}, {}
    for shift_id, image_id, is_defect in chunk:
        key = f"{shift_id}/{image_id}"
        try:
            frames[key] = store.read_image(shift_id, image_id)
            labels[key] = is_defect
        except Exception:  # removed or damaged since it was reviewed: it cannot be scored
            out.unreadable += 1
    device = compute_device()
    regions = component_regions(frames, segmenter, device) if frames else {}
    crops, kept = [], []
    for key, (box, _) in regions.items():
        if box is None:
            out.no_component += 1
            continue
        crops.append(crop_image(frames[key], box))
        kept.append(key)
    if not crops:
        return
    out.labels.extend(labels[key] for key in kept)
    for name, ref in detectors.items():
        model, _, _ = get_model(ref)
        result = score_crops(model, crops, None, autocast=device.type == "cuda")
        out.raw.setdefault(name, []).extend(float(value) for value in result.raw_scores)


@task(name="evaluate-reviewed")
def evaluate_reviewed_task(
    home: str, frames: list[ReviewedFrame], segmenter_uri: str, detector_uris: dict[str, str], batch_size: int = 8
) -> dict[str, Any]:
    """Image AUROC of each detector in ``detector_uris`` (name -> URI) on the reviewed ``frames``.

    Returns:
        ``defect`` and ``false_alarm`` (frames scored), ``unreadable`` and ``no_component`` (frames skipped), and
        ``image_auroc`` (name -> AUROC), empty unless both a defect and a false alarm could be scored.
    """
    settings = load_settings(home)
    store = FrameStore(settings.store_path)
    segmenter = pin_model(settings, segmenter_uri, "segmenter")
    detectors = {name: pin_model(settings, uri, "detector") for name, uri in detector_uris.items()}
    scored = _Scored()
    for start in range(0, len(frames), batch_size):  # a few full-resolution frames in memory at a time
        _score_chunk(store, frames[start : start + batch_size], segmenter, detectors, scored)
    labels = np.asarray(scored.labels, dtype=bool)
    defect, false_alarm = int(labels.sum()), int(labels.size - labels.sum())
    both = defect > 0 and false_alarm > 0
    return {
        "defect": defect,
        "false_alarm": false_alarm,
        "unreadable": scored.unreadable,
        "no_component": scored.no_component,
        "image_auroc": {name: auroc(labels, np.asarray(raw)) for name, raw in scored.raw.items()} if both else {},
    }
