"""Task: crop frames of a shift with the champion segmenter and write the crops as training images.

The models are imported inside the task's body, on the worker: the flow process imports this module to submit
the task and must not import torch for it (docs/architecture.md).
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image
from prefect import task

from storage.frame_store import FrameStore
from tasks.model_ref import ModelRef


@task(name="extract-crops", retries=2, retry_delay_seconds=2)
def extract_crops(store_path: str, shift_id: str, image_ids: list[str], segmenter: ModelRef, out_dir: str) -> list[str]:
    """Segment each frame, crop it to the component and save ``<shift>__<image_id>.png``; returns written names.

    Frames where no component is found are skipped (they cannot teach the detector what a good part looks like).
    """
    from models.cropping import crop_region
    from models.segmentation.inference import predict_masks
    from tasks.model_cache import compute_device, get_model

    store = FrameStore(store_path)
    model, _, _ = get_model(segmenter)
    frames = [store.read_image(shift_id, image_id) for image_id in image_ids]
    masks = predict_masks(model, frames, device=compute_device())
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for image_id, frame, mask in zip(image_ids, frames, masks, strict=True):
        region = crop_region(mask, frame.shape[:2])
        if region.box is None:
            continue
        crop = frame[region.box.y0 : region.box.y1, region.box.x0 : region.box.x1]
        name = f"{shift_id}__{image_id}.png"
        Image.fromarray(crop[..., 0] if crop.shape[-1] == 1 else crop).save(folder / name)
        written.append(name)
    return written
