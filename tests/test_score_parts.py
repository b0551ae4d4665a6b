"""Scoring's part tables merged in one Arrow read (issue #11): parts that disagree on column types still merge.

A batch of frames without a component has no boxes (a null column in its part), another has integer boxes, a
third mixes both (floats); the merged table holds every frame once, the latest record winning.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from storage.score_parts import PARTS_DIR, consolidate
from storage.tables import SCORE_COLUMNS, ScoreRecord, ScoreStatus, read_scores, write_table


def _part(results_dir: Path, name: str, records: list[ScoreRecord]) -> None:
    write_table(pd.DataFrame([r.row() for r in records], columns=SCORE_COLUMNS), results_dir / PARTS_DIR / name)


def test_parts_of_every_kind_merge_into_one_row_per_frame(tmp_path: Path) -> None:
    boxed = [
        ScoreRecord(f"f{i}", ScoreStatus.SCORED, "", "1", "2", 0.1 * i, i > 2, 1.0, 2.0, 1, 2, 30, 40) for i in (1, 2)
    ]
    _part(tmp_path, "a.parquet", boxed)
    _part(tmp_path, "b.parquet", [ScoreRecord("f3", ScoreStatus.NO_COMPONENT, "", "1", "2")])
    _part(tmp_path, "c.parquet", [ScoreRecord("f4", ScoreStatus.FAILED, "boom", None, "2"), *boxed[:1]])
    _part(tmp_path, "d.parquet", [ScoreRecord("f4", ScoreStatus.SCORED, "", "1", "2", 0.9, True, 3.0, 2.0, 5, 6, 7, 8)])
    merged = consolidate(tmp_path).set_index("image_id")
    assert sorted(merged.index) == ["f1", "f2", "f3", "f4"]
    assert merged.loc["f4", "status"] == ScoreStatus.SCORED and merged.loc["f4", "y0"] == 5  # the latest record
    assert pd.isna(merged.loc["f3", "y0"]) and merged.loc["f2", "x1"] == 40
    assert not (tmp_path / PARTS_DIR).exists() or not any((tmp_path / PARTS_DIR).iterdir())
    written = read_scores(tmp_path).set_index("image_id")
    pd.testing.assert_series_equal(written["score"].sort_index(), merged["score"].sort_index())
