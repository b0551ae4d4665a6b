"""Result tables of a shift (parquet): the ingest manifest and the scores.

Tables are rewritten whole through a temporary file and an atomic rename, so a reader never sees half a file
and a killed writer leaves the previous version intact.
"""

from __future__ import annotations

import math
import os
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from enum import StrEnum
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from storage.ids import InvalidShiftId, validate_shift_id


class FrameStatus(StrEnum):
    """A manifest row's status: what the ingest did with a file."""

    INGESTED = "ingested"  # decoded and stored
    QUARANTINED = "quarantined"  # not a usable frame; the reason says why
    DUPLICATE = "duplicate"  # the same bytes as another file of the shift
    DAMAGED = "damaged"  # stored, but its pixels no longer match the checksum (``defectflow verify``)


#: Manifest statuses of rows that have an array in the store.
STORED = (FrameStatus.INGESTED, FrameStatus.DAMAGED)


class ScoreStatus(StrEnum):
    """A scores row's status."""

    SCORED = "scored"  # the detector scored the component's crop
    NO_COMPONENT = "no_component"  # the segmenter found no component to crop; nothing to score
    FAILED = "failed"  # the frame could not be scored; the reason says why, a re-run tries again


#: Score statuses a re-run keeps (it scores only the other frames).
FINISHED = (ScoreStatus.SCORED, ScoreStatus.NO_COMPONENT)

MANIFEST_COLUMNS = [
    "image_id",
    "source_path",
    "sha256",
    "height",
    "width",
    "channels",
    "dtype",
    "status",
    "reason",
    "bytes",
    "ingested_at",
]
SCORE_COLUMNS = [
    "image_id",
    "score",
    "is_anomalous",
    "raw_score",
    "threshold",
    "y0",
    "x0",
    "y1",
    "x1",
    "status",
    "reason",
    "segmenter_version",
    "detector_version",
    "scored_at",
    "detector_runtime",
]


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass
class ScoreRecord:
    """One row of a shift's scores table (:data:`SCORE_COLUMNS`); what a scoring task returns per frame.

    ``detector_runtime`` says what computed a scored frame's map: ``torch-cpu``, ``torch-cuda`` or ``onnx-cpu``
    (ONNX Runtime on the package's export), so a night's figures can be traced to the runtime that made them.
    """

    image_id: str
    status: ScoreStatus
    reason: str = ""
    segmenter_version: str | None = None
    detector_version: str | None = None
    score: float = math.nan
    is_anomalous: bool = False
    raw_score: float = math.nan
    threshold: float = math.nan
    y0: int | None = None
    x0: int | None = None
    y1: int | None = None
    x1: int | None = None
    scored_at: str = field(default_factory=_now)
    detector_runtime: str | None = None

    def row(self) -> dict[str, Any]:
        """The record as a table row, columns in :data:`SCORE_COLUMNS` order (the status as its string)."""
        values = {name: getattr(self, name) for name in SCORE_COLUMNS}
        values["status"] = str(self.status)
        return values


MANIFEST_FILE = "manifest.parquet"
SCORES_FILE = "scores.parquet"


def ingested_shifts(results_root: Path) -> list[str]:
    """Shifts with a manifest under ``results_root``, most recently ingested first (folders whose names no shift can
    have are skipped)."""
    found = []
    for manifest in results_root.glob(f"*/{MANIFEST_FILE}") if results_root.is_dir() else []:
        try:
            found.append((manifest.stat().st_mtime, validate_shift_id(manifest.parent.name)))
        except (InvalidShiftId, OSError):
            continue
    return [shift for _, shift in sorted(found, reverse=True)]


def write_table(frame: pd.DataFrame | pa.Table, path: Path) -> Path:
    """Write ``frame`` (pandas or Arrow) to ``path`` atomically (temporary file in the same folder, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(handle)
    try:
        if isinstance(frame, pa.Table):
            pq.write_table(frame, temporary)
        else:
            frame.to_parquet(temporary, index=False)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def _read(path: Path, columns: list[str]) -> pd.DataFrame:
    if not path.is_file():
        return pd.DataFrame({name: pd.Series(dtype="object") for name in columns})
    return pd.read_parquet(path)


def read_manifest(results_dir: Path) -> pd.DataFrame:
    """The shift's manifest, or an empty table with the manifest's columns."""
    return _read(results_dir / MANIFEST_FILE, MANIFEST_COLUMNS)


def write_manifest(results_dir: Path, rows: pd.DataFrame | pa.Table) -> Path:
    """Write the manifest sorted by source path, columns in the documented order.

    An ingest passes an Arrow table (:mod:`storage.manifest_parts`), so that a large shift's rows never become
    Python objects in the flow process.
    """
    if isinstance(rows, pa.Table):
        return write_table(rows.select(MANIFEST_COLUMNS).sort_by("source_path"), results_dir / MANIFEST_FILE)
    rows = rows[MANIFEST_COLUMNS].sort_values("source_path", kind="stable").reset_index(drop=True)
    return write_table(rows, results_dir / MANIFEST_FILE)


def read_scores(results_dir: Path) -> pd.DataFrame:
    """The shift's scores, or an empty table with the score columns.

    A table written before a column was added gets it empty (``detector_runtime`` came later), so older shifts
    read, merge and rescore like new ones.
    """
    return with_score_columns(_read(results_dir / SCORES_FILE, SCORE_COLUMNS))


def with_score_columns(scores: pd.DataFrame) -> pd.DataFrame:
    """``scores`` with every column of :data:`SCORE_COLUMNS`; one a table was written without is added empty."""
    for name in SCORE_COLUMNS:
        if name not in scores.columns:
            scores[name] = None
    return scores


def write_scores(results_dir: Path, rows: pd.DataFrame) -> Path:
    """Write the scores sorted by image id, columns in the documented order."""
    rows = rows[SCORE_COLUMNS].sort_values("image_id", kind="stable").reset_index(drop=True)
    return write_table(rows, results_dir / SCORES_FILE)
