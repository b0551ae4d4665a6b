"""The ingest's manifest written in parts (issue #11): every row arrives in the manifest, typed as before.

Structural checks only; what the parts save in memory is measured by ``benchmarks/scale.py``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from storage.manifest_parts import PARTS_DIR, ManifestParts, combine_parts
from storage.tables import MANIFEST_COLUMNS, FrameStatus, read_manifest, write_manifest


def _row(index: int, status: str = FrameStatus.INGESTED) -> dict[str, Any]:
    stored = status == FrameStatus.INGESTED
    return {
        "image_id": f"id{index:04d}",
        "source_path": f"f{index:04d}.png",
        "sha256": f"{index:064x}",
        "height": 4 if stored else None,
        "width": 6 if stored else None,
        "channels": 3 if stored else None,
        "dtype": "uint8" if stored else None,
        "status": status,
        "reason": "" if stored else "cannot be decoded",
        "bytes": 100 + index,
        "ingested_at": "2026-12-01T00:00:00+00:00" if stored else None,
    }


def test_rows_added_in_batches_come_back_once_each_sorted_by_path(tmp_path: Path) -> None:
    parts = ManifestParts(tmp_path, part_rows=5)
    indices = list(np.random.default_rng(0).permutation(23))
    for start in range(0, 23, 3):  # batches finish in any order; a part holds rows of several batches
        parts.add(
            [
                _row(int(i), FrameStatus.QUARANTINED if i % 7 == 0 else FrameStatus.INGESTED)
                for i in indices[start : start + 3]
            ]
        )
    assert len(list((tmp_path / PARTS_DIR).glob("*.parquet"))) == 4  # whole batches, once 5 rows are buffered
    parts.flush()
    manifest = combine_parts(tmp_path, read_manifest(tmp_path))
    assert manifest.column("source_path").to_pylist() == [f"f{i:04d}.png" for i in range(23)]
    write_manifest(tmp_path, manifest)
    parts.remove()
    assert not (tmp_path / PARTS_DIR).exists()
    written = read_manifest(tmp_path)
    assert list(written.columns) == MANIFEST_COLUMNS
    quarantined = written[written["status"] == FrameStatus.QUARANTINED]
    assert list(quarantined["source_path"]) == ["f0000.png", "f0007.png", "f0014.png", "f0021.png"]
    assert quarantined["height"].isna().all() and quarantined["dtype"].isna().all()
    stored = written[written["status"] == FrameStatus.INGESTED]
    assert (stored["height"] == 4).all() and (stored["dtype"] == "uint8").all()
    assert list(written["bytes"]) == [100 + i for i in range(23)]


def test_rows_of_the_previous_manifest_are_kept_as_they_were(tmp_path: Path) -> None:
    first = pd.DataFrame([_row(i, FrameStatus.QUARANTINED if i == 1 else FrameStatus.INGESTED) for i in range(3)])
    write_manifest(tmp_path, first)
    previous = read_manifest(tmp_path)  # as a re-run sees it: NaN where the first run had None
    parts = ManifestParts(tmp_path)
    parts.add(previous[previous["source_path"] != "f0002.png"].to_dict("records"))  # kept through the plan
    parts.add([_row(3)])
    parts.flush()
    manifest = combine_parts(tmp_path, previous[previous["source_path"] == "f0002.png"])  # no longer listed: kept
    write_manifest(tmp_path, manifest)
    again = read_manifest(tmp_path)
    pd.testing.assert_frame_equal(again.iloc[:3].reset_index(drop=True), previous)
    assert list(again["source_path"]) == [f"f{i:04d}.png" for i in range(4)]


def test_parts_a_killed_run_left_are_removed_by_the_next_run(tmp_path: Path) -> None:
    killed = ManifestParts(tmp_path, part_rows=1)
    killed.add([_row(0), _row(1)])  # written, then the run died before its manifest
    rerun = ManifestParts(tmp_path)
    rerun.add([_row(2)])
    rerun.flush()
    assert combine_parts(tmp_path, read_manifest(tmp_path)).column("source_path").to_pylist() == ["f0002.png"]
