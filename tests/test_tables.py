"""One definition of a scores row and of the statuses (issue #12)."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from storage.tables import FINISHED, SCORE_COLUMNS, ScoreRecord, ScoreStatus, read_scores, write_scores


def test_a_score_record_is_a_full_row_that_round_trips_through_parquet(tmp_path: Path) -> None:
    rows = [
        ScoreRecord(
            "a.png", ScoreStatus.SCORED, score=0.7, is_anomalous=True, raw_score=1.2, y0=1, x0=2, y1=3, x1=4
        ).row(),
        ScoreRecord("b.png", ScoreStatus.FAILED, "cannot read frame", None, "3").row(),
    ]
    assert all(list(row) == SCORE_COLUMNS for row in rows)
    assert rows[0]["status"] == "scored" and type(rows[0]["status"]) is str
    write_scores(tmp_path, pd.DataFrame(rows, columns=SCORE_COLUMNS))
    back = read_scores(tmp_path).set_index("image_id")
    assert back.loc["a.png", "status"] == ScoreStatus.SCORED and back.loc["b.png", "detector_version"] == "3"
    assert math.isnan(back.loc["b.png", "score"]) and back["status"].isin(FINISHED).tolist() == [True, False]


def test_a_scores_table_written_before_the_runtime_column_reads_and_merges_with_new_rows(tmp_path: Path) -> None:
    from storage.score_parts import consolidate, write_score_part

    old = pd.DataFrame([ScoreRecord("a.png", ScoreStatus.SCORED, score=0.2).row()], columns=SCORE_COLUMNS)
    old.drop(columns="detector_runtime").to_parquet(tmp_path / "scores.parquet")
    assert list(read_scores(tmp_path).columns) == SCORE_COLUMNS
    write_score_part(tmp_path, [ScoreRecord("b.png", ScoreStatus.SCORED, score=0.9, detector_runtime="onnx-cpu").row()])
    merged = consolidate(tmp_path).set_index("image_id")
    assert merged.loc["b.png", "detector_runtime"] == "onnx-cpu" and merged.loc["a.png", "detector_runtime"] is None
    assert list(read_scores(tmp_path).columns) == SCORE_COLUMNS
