"""The manifest of a running ingest, written in parts as its batches finish and combined into one table at the end.

Holding every row as a Python dict until the end made the ingest's flow process grow with the shift (issue #11:
about 4 KB per frame, the hashed records, the plan, the decoded rows and the table built from them all at once).
Rows go to parquet parts of at most ``PART_ROWS`` rows (``results/<shift>/manifest.parts/``); the end reads the
parts back into Arrow (a few hundred bytes per row, no Python object per row) and the caller writes the manifest
once, atomically, as before. A killed ingest leaves its parts behind without a manifest: the next ingest of the
shift removes them, because it decides those files again.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from storage.tables import MANIFEST_COLUMNS

PARTS_DIR = "manifest.parts"
PART_ROWS = 1024  # rows buffered before a part is written: about 1 MB of dicts

#: Column types of the manifest, so that parts agree whatever their rows hold (a part of quarantined files only
#: has no pixel sizes).
_INTEGERS = ("height", "width", "channels", "bytes")
MANIFEST_SCHEMA = pa.schema([(name, pa.int64() if name in _INTEGERS else pa.string()) for name in MANIFEST_COLUMNS])


class ManifestParts:
    """Rows of one ingest run, buffered up to ``part_rows`` and written to parts (read by :func:`combine_parts`)."""

    def __init__(self, results_dir: Path, part_rows: int = PART_ROWS) -> None:
        self.folder = results_dir / PARTS_DIR
        self.part_rows = part_rows
        self._rows: list[dict[str, Any]] = []
        self._written = 0
        shutil.rmtree(self.folder, ignore_errors=True)  # a killed run's: its files are decided again
        self.folder.mkdir(parents=True)

    def add(self, rows: Iterable[dict[str, Any]]) -> None:
        """Buffer ``rows`` (manifest rows as dicts); write a part once the buffer is full."""
        self._rows.extend(rows)
        if len(self._rows) >= self.part_rows:
            self.flush()

    def flush(self) -> None:
        """Write the rows still buffered as a part; the ingest calls it once more before :func:`combine_parts`."""
        if not self._rows:
            return
        rows = pd.DataFrame(self._rows, columns=MANIFEST_COLUMNS)  # pandas: rows of a read manifest carry NaN
        table = pa.Table.from_pandas(rows, schema=MANIFEST_SCHEMA, preserve_index=False)
        pq.write_table(table, self.folder / f"{self._written:06d}.parquet")
        self._written += 1
        self._rows = []

    def remove(self) -> None:
        """Delete the parts (once the manifest is written)."""
        shutil.rmtree(self.folder, ignore_errors=True)


def combine_parts(results_dir: Path, earlier: pd.DataFrame) -> pa.Table:
    """The parts in ``results_dir`` and ``earlier`` (rows kept as they are) as one Arrow table, by source path.

    Arrow, for :func:`storage.tables.write_manifest`: a pandas copy of it and the copies pandas makes to sort and
    write it cost about 2 KB per frame. The ingest runs this on a worker (:mod:`tasks.write_manifest`): even in
    Arrow the end step takes about 1 KB per row for a moment (``benchmarks/manifest_end.py``), which the flow
    process, holding no rows, need not pay (issue #11).
    """
    parts = sorted((results_dir / PARTS_DIR).glob("*.parquet"))
    tables = [pq.read_table(part, schema=MANIFEST_SCHEMA) for part in parts]
    kept = earlier[MANIFEST_COLUMNS].reset_index(drop=True)
    tables.append(pa.Table.from_pandas(kept, schema=MANIFEST_SCHEMA, preserve_index=False))
    return pa.concat_tables(tables).sort_by("source_path")
