"""Flow ``ingest_shift``: a folder of camera frames into the workspace's zarr store, with a manifest.

The flow process only lists files and keeps small records; hashing, decoding and writing run on Dask workers,
so memory stays flat however large the shift grows. Re-running the same ingest changes nothing; what a re-run
does with changed files is decided in :mod:`flows.ingest_plan`.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pandas as pd
from prefect import flow, get_run_logger

from flows.batching import batches
from flows.ingest_plan import plan_ingest
from flows.progress import track_batches
from flows.results import IngestResult
from flows.runtime import default_task_runner
from storage.frame_files import SourceError, list_source_files, resolve_source_dir
from storage.frame_store import FrameStore
from storage.ids import validate_shift_id
from storage.settings import Settings, load_settings
from storage.shift_lock import shift_lock
from storage.tables import MANIFEST_COLUMNS, FrameStatus, read_manifest, write_manifest
from tasks.hash_files import hash_files
from tasks.ingest_frames import ingest_frames

HASH_BATCH = 64  # files per hashing task


@flow(name="ingest_shift", log_prints=True, task_runner=default_task_runner())
def ingest_shift(
    source: str,
    shift_id: str,
    home: str | None = None,
    max_pixels: int | None = None,
    batch_size: int = 16,
) -> IngestResult:
    """Ingest every file below ``source`` as shift ``shift_id``.

    Args:
        source: Folder the camera line wrote the shift's frames to (read recursively, dotfiles ignored).
        shift_id: Name of the shift, ``[A-Za-z0-9._-]{1,64}``.
        home: Workspace directory (default ``DEFECTFLOW_HOME`` or ``./defectflow-home``).
        max_pixels: Refuse frames whose header declares more pixels (default ``DEFECTFLOW_MAX_PIXELS``).
        batch_size: Frames per Dask task (a worker decodes and writes them one at a time, so a batch costs no
            memory, while each task run costs Prefect and Dask a fraction of a second).

    Returns:
        Summary: counts per status, quarantine reasons, manifest path.
    """
    validate_shift_id(shift_id)
    root = resolve_source_dir(source)
    settings = load_settings(home).ensure()
    with shift_lock(settings.home, shift_id, f"ingest {root}"):
        return _ingest(root, shift_id, settings, max_pixels or settings.max_pixels, batch_size)


def _ingest(root: Path, shift_id: str, settings: Settings, limit: int, batch_size: int) -> IngestResult:
    """The work of :func:`ingest_shift`, done while the shift's lock is held."""
    logger = get_run_logger()
    paths = list_source_files(root)
    if not paths:
        raise SourceError(f"source folder {root} holds no files (dotfiles are ignored); check the path")
    results_dir = settings.results_dir(shift_id)
    previous = read_manifest(results_dir)
    store = FrameStore(settings.store_path)
    store.ensure_shift(shift_id, source=str(root))

    hashed: list[dict[str, Any]] = []
    hash_chunks = batches(paths, HASH_BATCH)
    for _, future in track_batches(lambda chunk: hash_files.submit(str(root), chunk), hash_chunks, "hashing", "files"):
        hashed.extend(future.result())
    hashed.sort(key=lambda item: item["source_path"])

    plan = plan_ingest(hashed, previous)
    logger.info(
        "%d files: %d unchanged, %d to decode, %d decided",
        len(paths),
        len(plan.kept),
        len(plan.jobs),
        len(plan.decided),
    )

    def decode(chunk: list[dict[str, Any]]) -> Any:
        return ingest_frames.submit(str(root), str(settings.store_path), shift_id, chunk, limit)

    ingested: list[dict[str, Any]] = []
    for _, future in track_batches(decode, batches(plan.jobs, batch_size), "ingesting", "frames"):
        ingested.extend(future.result())

    rows, new = plan.settle(ingested)
    listed = set(paths)
    vanished = [row for row in previous.to_dict("records") if row["source_path"] not in listed]
    manifest = pd.DataFrame(rows + vanished, columns=MANIFEST_COLUMNS)
    manifest_path = write_manifest(results_dir, manifest)

    counts = Counter(manifest["status"])
    quarantined = manifest[manifest["status"] == FrameStatus.QUARANTINED]
    summary = {
        "shift_id": shift_id,
        "files": len(paths),
        "new": new,
        "ingested": int(counts.get(FrameStatus.INGESTED, 0)),
        "duplicate": int(counts.get(FrameStatus.DUPLICATE, 0)),
        "quarantined": int(counts.get(FrameStatus.QUARANTINED, 0)),
        "quarantine_reasons": dict(zip(quarantined["source_path"], quarantined["reason"], strict=True)),
        "refused": plan.refused,
        "manifest": str(manifest_path),
        "store": str(FrameStore(settings.store_path).shift_path(shift_id)),
    }
    logger.info(
        "shift %s: %d ingested, %d duplicate, %d quarantined",
        shift_id,
        summary["ingested"],
        summary["duplicate"],
        summary["quarantined"],
    )
    return IngestResult(**summary)
