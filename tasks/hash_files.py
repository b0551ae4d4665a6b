"""Task: content digests of source files, the basis of duplicate detection and idempotent re-runs."""

from __future__ import annotations

from pathlib import Path

from prefect import task

from storage.frame_files import not_a_file_reason, sha256_of, vanished_reason


def _record(relative: str, path: Path) -> dict[str, object]:
    reason = not_a_file_reason(path)
    if reason is None:
        try:
            return {"source_path": relative, "sha256": sha256_of(path), "bytes": path.stat().st_size, "unreadable": ""}
        except FileNotFoundError:
            reason = vanished_reason()
        except PermissionError as error:
            reason = f"cannot be read ({error.strerror}); give the ingest read access and re-run it"
    return {"source_path": relative, "sha256": "", "bytes": 0, "unreadable": reason}


@task(name="hash-files", retries=2, retry_delay_seconds=1)
def hash_files(source_root: str, relative_paths: list[str]) -> list[dict[str, object]]:
    """SHA-256 and size of each file, read where it lies (on a worker, so the flow never reads frame bytes).

    Returns:
        One ``{"source_path", "sha256", "bytes", "unreadable"}`` record per file, in input order; an entry that
        cannot be read (a link to a folder, a dangling link, a file gone since the listing) has an empty hash and
        the reason in ``unreadable``.
    """
    root = Path(source_root)
    return [_record(relative, root / relative) for relative in relative_paths]
