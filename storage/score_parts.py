"""Scoring's part tables: one per finished batch, merged into the shift's ``scores.parquet`` when a run ends.

A batch writes its records to a part of its own (``results/<shift>/scores.parts/<uuid>.parquet``) as soon as it
is done, so a worker or flow process that dies later loses nothing that was finished; the next run, or
``defectflow verify``, merges the parts it finds. The folder, the part's file and the merge rule (the latest
record per frame wins) live here, next to the scores table itself (:mod:`storage.tables`).
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from storage.tables import SCORE_COLUMNS, read_scores, with_score_columns, write_scores, write_table

PARTS_DIR = "scores.parts"


def write_score_part(results_dir: Path, rows: list[dict[str, Any]]) -> Path:
    """Write one batch's score rows as a new part of the shift in ``results_dir``."""
    return write_table(
        pd.DataFrame(rows, columns=SCORE_COLUMNS), results_dir / PARTS_DIR / f"{uuid.uuid4().hex}.parquet"
    )


def consolidate(results_dir: Path) -> pd.DataFrame:
    """Merge part tables left by finished batches into ``scores.parquet`` (latest record per frame wins)."""
    parts_dir = results_dir / PARTS_DIR
    parts = sorted(parts_dir.glob("*.parquet")) if parts_dir.is_dir() else []
    frames = [read_scores(results_dir), _read_parts(parts)]
    frames = [f for f in frames if not f.empty]
    if not frames:
        return read_scores(results_dir)
    merged = pd.concat(frames, ignore_index=True).sort_values("scored_at", kind="stable")
    merged = merged.drop_duplicates("image_id", keep="last")
    if parts:
        write_scores(results_dir, merged)
        for part in parts:
            part.unlink(missing_ok=True)
    return merged.reset_index(drop=True)


def _read_parts(parts: list[Path]) -> pd.DataFrame:
    """The part tables as one table, read through Arrow: a DataFrame per part (one per batch) cost the flow
    process some KB each, about 35 MiB at 10,000 frames (issue #11)."""
    if not parts:
        return pd.DataFrame()
    table = pa.concat_tables([pq.read_table(p) for p in parts], promote_options="permissive")
    return with_score_columns(table.to_pandas())
