"""Task: decode a batch of frames and write each to the zarr store.

The decoder (:mod:`models.imaging`, which imports torch) is imported inside the task's body: the flow process
imports this module to submit the task and must not import torch for it (docs/architecture.md).
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

from prefect import task

from storage.frame_files import FrameRejected, read_source
from storage.frame_store import FrameStore
from storage.tables import FrameStatus


def _row(job: dict[str, object], status: str, reason: str = "", shape: tuple[int, ...] = (), dtype: str = "") -> dict:
    return {
        "image_id": job["image_id"],
        "source_path": job["source_path"],
        "sha256": job["sha256"],
        "height": shape[0] if shape else None,
        "width": shape[1] if shape else None,
        "channels": shape[2] if shape else None,
        "dtype": dtype or None,
        "status": status,
        "reason": reason,
        "bytes": job["bytes"],
        "ingested_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


@task(name="ingest-frames", retries=2, retry_delay_seconds=2)
def ingest_frames(
    source_root: str, store_path: str, shift_id: str, jobs: list[dict[str, object]], max_pixels: int
) -> list[dict[str, object]]:
    """Decode each file of ``jobs`` and write it as ``shifts/<shift>/images/<image_id>``.

    A file that cannot be decoded (or vanished or changed since it was hashed) is quarantined with its reason and
    does not stop the batch; an error of the store itself (disk full, permissions) fails the task so that
    Prefect retries it.

    Args:
        source_root: The shift's source folder.
        store_path: The workspace's ``store.zarr``.
        shift_id: Shift the frames belong to.
        jobs: ``{"image_id", "source_path", "sha256", "bytes"}`` per file.
        max_pixels: Frames whose header declares more pixels are refused before decoding.

    Returns:
        One manifest row per job.
    """
    from models.imaging import ImageRejected, decode_image

    store = FrameStore(store_path)
    rows: list[dict[str, object]] = []
    for job in jobs:
        path = Path(source_root) / str(job["source_path"])
        try:
            decoded = decode_image(read_source(path, str(job["sha256"])), path.suffix, max_pixels)
        except (FrameRejected, ImageRejected) as rejection:
            rows.append(_row(job, FrameStatus.QUARANTINED, str(rejection)))
            continue
        pixels = decoded.pixels
        store.write_image(
            shift_id,
            str(job["image_id"]),
            pixels,
            {
                "source_path": job["source_path"],
                "sha256": job["sha256"],
                "shape": list(pixels.shape),
                "dtype": str(pixels.dtype),
                "ingested_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "conversions": decoded.conversions,
            },
        )
        rows.append(_row(job, FrameStatus.INGESTED, "; ".join(decoded.conversions), pixels.shape, str(pixels.dtype)))
    return rows
