"""Operator verdicts on scored frames: an append-only log in the workspace (SQLite).

Reviewers record what a flagged frame really shows (``defect``, ``false_alarm``, ``unsure``) the morning after a
shift. Verdicts are the scarcest labels a plant has, so they are never changed or deleted: a new verdict on the same
frame is a new row, and the latest one counts. SQLite gives what a plain file cannot: several reviewers (web app
threads, processes) append at once without losing a row, and a killed writer leaves the log as it was before its
transaction (write-ahead log, ``synchronous=FULL``).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from enum import StrEnum
from pathlib import Path

import pandas as pd

from models.errors import DefectflowError
from storage.ids import validate_shift_id

VERDICTS_FILE = "verdicts.sqlite"
MAX_NOTE_LENGTH = 2000
MAX_NAME_LENGTH = 100
_BUSY_TIMEOUT_S = 30.0


class Verdict(StrEnum):
    """What a reviewer says a frame shows."""

    DEFECT = "defect"  # a real defect: never trained on as normal; a positive of the reviewed evaluation set
    FALSE_ALARM = "false_alarm"  # flagged, but normal: a negative, and a normal training frame for the next retrain
    UNSURE = "unsure"  # looked at, no decision: counts as reviewed, used nowhere else


class InvalidVerdict(DefectflowError, ValueError):
    """A verdict that cannot be recorded as given; the message says what to change."""


@dataclass(frozen=True)
class VerdictRecord:
    """One row of the log."""

    id: int
    shift_id: str
    image_id: str
    verdict: Verdict
    reviewer: str
    recorded_at: str
    defect_type: str | None = None
    note: str | None = None


#: Columns of an exported verdict table, in this order.
VERDICT_COLUMNS = [name for name in VerdictRecord.__dataclass_fields__]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS verdicts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    shift_id TEXT NOT NULL,
    image_id TEXT NOT NULL,
    verdict TEXT NOT NULL,
    reviewer TEXT NOT NULL,
    recorded_at TEXT NOT NULL,
    defect_type TEXT,
    note TEXT
);
CREATE INDEX IF NOT EXISTS verdicts_by_frame ON verdicts (shift_id, image_id, id);
CREATE TRIGGER IF NOT EXISTS verdicts_no_update BEFORE UPDATE ON verdicts
    BEGIN SELECT RAISE(ABORT, 'verdicts are append-only: record a new verdict instead'); END;
CREATE TRIGGER IF NOT EXISTS verdicts_no_delete BEFORE DELETE ON verdicts
    BEGIN SELECT RAISE(ABORT, 'verdicts are append-only: record a new verdict instead'); END;
"""


def _text(value: str | None, what: str, limit: int, required: bool = False) -> str | None:
    """``value`` stripped, ``None`` when empty; refused when required and empty, or longer than ``limit``."""
    text = (value or "").strip()
    if required and not text:
        raise InvalidVerdict(f"{what} is empty; give a {what}")
    if len(text) > limit:
        raise InvalidVerdict(f"{what} has {len(text)} characters; keep it to {limit}")
    return text or None


def parse_verdict(value: str) -> Verdict:
    """The verdict named by ``value`` (``false alarm`` and ``false-alarm`` are accepted for ``false_alarm``)."""
    key = str(value).strip().lower().replace(" ", "_").replace("-", "_")
    try:
        return Verdict(key)
    except ValueError:
        choices = ", ".join(verdict.value for verdict in Verdict)
        raise InvalidVerdict(f"unknown verdict {value!r}; use one of: {choices}") from None


def _prepare(connection: sqlite3.Connection, write_ahead_log: bool) -> None:
    """Put the log in write-ahead mode and make sure its schema exists, waiting out other writers.

    SQLite answers ``database is locked`` at once, without waiting its busy timeout, when another connection is
    switching the file to write-ahead mode or recovering its log (the first writers on a new file meet exactly
    this), so these first statements are retried until the same timeout.
    """
    deadline = time.monotonic() + _BUSY_TIMEOUT_S
    while True:
        try:
            if write_ahead_log:
                connection.execute("PRAGMA journal_mode=WAL")
                connection.execute("PRAGMA synchronous=FULL")
            connection.executescript(_SCHEMA)
            return
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


class VerdictStore:
    """The workspace's verdict log.

    Args:
        path: The SQLite file (``Settings.verdicts_path``); created with its folder on the first write.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    @contextmanager
    def _connect(self, write: bool) -> Iterator[sqlite3.Connection]:
        on_disk = write or self.path.exists()
        if on_disk:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            connection = sqlite3.connect(self.path, timeout=_BUSY_TIMEOUT_S, isolation_level=None)
        else:
            connection = sqlite3.connect(":memory:")
        with closing(connection):
            _prepare(connection, write_ahead_log=on_disk)
            yield connection

    def record(
        self,
        shift_id: str,
        image_id: str,
        verdict: Verdict | str,
        reviewer: str,
        defect_type: str | None = None,
        note: str | None = None,
    ) -> VerdictRecord:
        """Append one verdict and return it as stored.

        The caller checks that the frame exists in the shift (the store does not read the results tables).

        Raises:
            InvalidVerdict: An unknown verdict, an empty reviewer, an over-long text, or a defect type on a
                verdict other than ``defect``.
            storage.ids.InvalidShiftId: A shift id that is not valid.
        """
        validate_shift_id(shift_id)
        kind = parse_verdict(verdict)
        image = _text(image_id, "image id", 400, required=True)
        name = _text(reviewer, "reviewer name", MAX_NAME_LENGTH, required=True)
        defect = _text(defect_type, "defect type", MAX_NAME_LENGTH)
        if defect and kind is not Verdict.DEFECT:
            raise InvalidVerdict(f"a defect type is only recorded with the verdict 'defect', not {kind.value!r}")
        remark = _text(note, "note", MAX_NOTE_LENGTH)
        recorded_at = datetime.now(timezone.utc).isoformat(timespec="milliseconds")
        with self._connect(write=True) as connection:
            cursor = connection.execute(
                "INSERT INTO verdicts (shift_id, image_id, verdict, reviewer, recorded_at, defect_type, note) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (shift_id, image, kind.value, name, recorded_at, defect, remark),
            )
            row_id = int(cursor.lastrowid)
        return VerdictRecord(row_id, shift_id, image, kind, name, recorded_at, defect, remark)

    def history(self, shift_id: str | None = None) -> list[VerdictRecord]:
        """Every verdict recorded (for one shift, or all), oldest first."""
        query = f"SELECT {', '.join(VERDICT_COLUMNS)} FROM verdicts"
        arguments: tuple[str, ...] = ()
        if shift_id is not None:
            query += " WHERE shift_id = ?"
            arguments = (validate_shift_id(shift_id),)
        with self._connect(write=False) as connection:
            rows = connection.execute(query + " ORDER BY id", arguments).fetchall()
        return [VerdictRecord(*row[:3], Verdict(row[3]), *row[4:]) for row in rows]

    def latest(self, shift_id: str | None = None) -> dict[tuple[str, str], VerdictRecord]:
        """The verdict that counts for each reviewed frame, by ``(shift_id, image_id)``: the last one recorded."""
        return {(record.shift_id, record.image_id): record for record in self.history(shift_id)}

    def table(self, shift_id: str | None = None) -> pd.DataFrame:
        """The history as a table with :data:`VERDICT_COLUMNS` (for exports)."""
        rows = [asdict(record) | {"verdict": record.verdict.value} for record in self.history(shift_id)]
        return pd.DataFrame(rows, columns=VERDICT_COLUMNS)
