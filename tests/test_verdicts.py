"""The verdict log: append-only, validated, and safe with several writers at once (real SQLite, real processes)."""

from __future__ import annotations

import sqlite3
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest

from storage.ids import InvalidShiftId
from storage.verdicts import VERDICT_COLUMNS, InvalidVerdict, Verdict, VerdictStore


def test_latest_verdict_counts_and_history_keeps_all(tmp_path: Path) -> None:
    store = VerdictStore(tmp_path / "verdicts.sqlite")
    assert store.latest() == {} and not (tmp_path / "verdicts.sqlite").exists()  # reading creates nothing
    store.record("night-1", "a.png", "defect", "ana", defect_type="scratch", note="left edge")
    store.record("night-1", "a.png", "false alarm", "ben")
    store.record("night-2", "a.png", Verdict.UNSURE, "ana")
    latest = store.latest("night-1")
    assert list(latest) == [("night-1", "a.png")]
    assert latest["night-1", "a.png"].verdict is Verdict.FALSE_ALARM
    assert latest["night-1", "a.png"].reviewer == "ben"
    history = store.history()
    assert [record.verdict for record in history] == [Verdict.DEFECT, Verdict.FALSE_ALARM, Verdict.UNSURE]
    assert history[0].defect_type == "scratch" and history[0].note == "left edge"
    table = store.table("night-1")
    assert list(table.columns) == VERDICT_COLUMNS and list(table["verdict"]) == ["defect", "false_alarm"]


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"verdict": "broken"}, "unknown verdict"),
        ({"reviewer": "  "}, "reviewer name is empty"),
        ({"verdict": "unsure", "defect_type": "scratch"}, "only recorded with the verdict 'defect'"),
        ({"note": "x" * 2001}, "keep it to 2000"),
        ({"image_id": ""}, "image id is empty"),
    ],
)
def test_bad_verdicts_are_refused_and_record_nothing(tmp_path: Path, arguments: dict, message: str) -> None:
    store = VerdictStore(tmp_path / "verdicts.sqlite")
    given = {"shift_id": "night-1", "image_id": "a.png", "verdict": "defect", "reviewer": "ana"} | arguments
    with pytest.raises(InvalidVerdict, match=message):
        store.record(**given)
    with pytest.raises(InvalidShiftId):
        store.record("../etc", "a.png", "defect", "ana")
    assert store.history() == []


def test_rows_cannot_be_changed_or_deleted(tmp_path: Path) -> None:
    path = tmp_path / "verdicts.sqlite"
    VerdictStore(path).record("night-1", "a.png", "defect", "ana")
    with sqlite3.connect(path) as connection:
        for statement in ("UPDATE verdicts SET verdict = 'unsure'", "DELETE FROM verdicts"):
            with pytest.raises(sqlite3.IntegrityError, match="append-only"):
                connection.execute(statement)
    assert [record.verdict for record in VerdictStore(path).history()] == [Verdict.DEFECT]


def _write_many(path: str, reviewer: str, count: int) -> int:
    store = VerdictStore(path)
    for index in range(count):
        store.record("night-1", f"frame-{index}.png", "false_alarm", reviewer)
    return count


def test_concurrent_writers_lose_nothing(tmp_path: Path) -> None:
    path = str(tmp_path / "verdicts.sqlite")
    with ProcessPoolExecutor(max_workers=4) as pool:
        written = sum(pool.map(_write_many, [path] * 4, ["ana", "ben", "cy", "dee"], [40] * 4))
    history = VerdictStore(path).history("night-1")
    assert written == len(history) == 160
    assert len({record.id for record in history}) == 160
    assert {record.reviewer for record in history} == {"ana", "ben", "cy", "dee"}
