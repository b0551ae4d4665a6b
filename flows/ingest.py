"""Flow ``ingest_shift``: a folder of camera frames into the workspace's zarr store, with a manifest.

The flow process only lists files and keeps small records; hashing, decoding and writing run on Dask workers,
so memory stays flat however large the shift grows. Re-running the same ingest changes nothing; what a re-run
does with changed files is decided in :mod:`flows.ingest_plan`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger

from flows.batching import batches
from flows.ingest_plan import plan_ingest
from flows.progress import track_batches
from flows.results import IngestResult
from flows.runtime import default_task_runner
from storage.frame_files import SourceError, list_source_files, resolve_source_dir
from storage.frame_store import FrameStore
from storage.ids import validate_shift_id
from storage.manifest_parts import ManifestParts
from storage.settings import Settings, load_settings
from storage.shift_lock import shift_lock
from storage.tables import read_manifest
from tasks.hash_files import hash_files
from tasks.ingest_frames import ingest_frames
from tasks.write_manifest import write_manifest_task

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
    """The work of :func:`ingest_shift`, done while the shift's lock is held.

    Rows go to the manifest's parts as batches finish (:mod:`storage.manifest_parts`), and a worker combines
    and writes them (:mod:`tasks.write_manifest`): the flow holds the plan and one part's rows, not every row of
    the shift.
    """
    paths = list_source_files(root)
    if not paths:
        raise SourceError(f"source folder {root} holds no files (dotfiles are ignored); check the path")
    results_dir = settings.results_dir(shift_id)
    previous = read_manifest(results_dir)
    FrameStore(settings.store_path).ensure_shift(shift_id, source=str(root))
    plan = plan_ingest(_hash(root, paths), previous)
    get_run_logger().info(
        "%d files: %d unchanged, %d to decode, %d decided",
        len(paths),
        len(plan.kept),
        len(plan.jobs),
        len(plan.decided),
    )
    parts = ManifestParts(results_dir)
    decided, new = plan.settle(plan.decided)
    parts.add(plan.kept + decided)

    def decode(chunk: list[dict[str, Any]]) -> Any:
        return ingest_frames.submit(str(root), str(settings.store_path), shift_id, chunk, limit)

    for _, future in track_batches(decode, batches(plan.jobs, batch_size), "ingesting", "frames"):
        rows, fresh = plan.settle(future.result())
        parts.add(rows)
        new += fresh
    parts.flush()
    vanished = previous[~previous["source_path"].isin(set(paths))].to_dict("records")
    written = write_manifest_task.submit(str(results_dir), vanished).result()
    parts.remove()
    result = IngestResult(
        shift_id=shift_id,
        files=len(paths),
        new=new,
        refused=plan.refused,
        store=str(FrameStore(settings.store_path).shift_path(shift_id)),
        **written,
    )
    get_run_logger().info(
        "shift %s: %d ingested, %d duplicate, %d quarantined",
        shift_id,
        result.ingested,
        result.duplicate,
        result.quarantined,
    )
    return result


def _hash(root: Path, paths: list[str]) -> list[dict[str, Any]]:
    """The hash records of ``paths`` (hashed on the workers), in path order."""
    hashed: list[dict[str, Any]] = []
    hash_chunks = batches(paths, HASH_BATCH)
    for _, future in track_batches(lambda chunk: hash_files.submit(str(root), chunk), hash_chunks, "hashing", "files"):
        hashed.extend(future.result())
    hashed.sort(key=lambda item: item["source_path"])
    return hashed
