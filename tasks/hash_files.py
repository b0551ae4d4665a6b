"""Task: content digests of source files, the basis of duplicate detection and idempotent re-runs."""

from __future__ import annotations

from pathlib import Path

from prefect import task

from storage.frame_files import sha256_of


@task(name="hash-files", retries=2, retry_delay_seconds=1)
def hash_files(source_root: str, relative_paths: list[str]) -> list[dict[str, object]]:
    """SHA-256 and size of each file, read where it lies (on a worker, so the flow never reads frame bytes).

    Returns:
        One ``{"source_path", "sha256", "bytes"}`` record per file, in input order.
    """
    root = Path(source_root)
    records: list[dict[str, object]] = []
    for relative in relative_paths:
        path = root / relative
        records.append({"source_path": relative, "sha256": sha256_of(path), "bytes": path.stat().st_size})
    return records
