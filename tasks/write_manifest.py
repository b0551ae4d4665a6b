"""Task: combine an ingest's manifest parts with the rows it keeps, write the manifest, and count it by status.

It runs on a worker, not in the flow process: combining and writing a shift's rows takes about 1 KB per row for a
moment even in Arrow, and the flow process, which holds no rows, stays flat in the shift's size (issue #11).
Returns the counts and the quarantine reasons only, never the table.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from prefect import task

from storage.manifest_parts import combine_parts
from storage.tables import MANIFEST_COLUMNS, FrameStatus, write_manifest


@task(name="write-manifest", retries=2, retry_delay_seconds=2)
def write_manifest_task(results_dir: str, earlier: list[dict[str, Any]]) -> dict[str, Any]:
    """Write ``results_dir``'s manifest from its parts and ``earlier`` rows (kept as they were).

    Args:
        results_dir: The shift's results folder, holding ``manifest.parts/``.
        earlier: Rows of the previous manifest that this run keeps as they are (files no longer listed).

    Returns:
        ``manifest`` (its path), and ``ingested``, ``duplicate``, ``quarantined`` and ``quarantine_reasons``.
    """
    folder = Path(results_dir)
    manifest = combine_parts(folder, pd.DataFrame(earlier, columns=MANIFEST_COLUMNS))
    path = write_manifest(folder, manifest)
    return {"manifest": str(path), **status_counts(manifest)}


def status_counts(manifest: pa.Table) -> dict[str, Any]:
    """Rows per status of a manifest, and why each quarantined file was."""
    statuses = manifest.column("status")
    quarantined = manifest.filter(pc.equal(statuses, FrameStatus.QUARANTINED.value))

    def count(status: FrameStatus) -> int:
        return int(pc.sum(pc.equal(statuses, status.value)).as_py() or 0)

    return {
        "ingested": count(FrameStatus.INGESTED),
        "duplicate": count(FrameStatus.DUPLICATE),
        "quarantined": count(FrameStatus.QUARANTINED),
        "quarantine_reasons": dict(
            zip(quarantined.column("source_path").to_pylist(), quarantined.column("reason").to_pylist(), strict=True)
        ),
    }
