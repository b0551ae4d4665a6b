"""One command at a time per shift: ingest, scoring and verification of a shift exclude each other.

Two commands that rewrite the same manifest or scores table at once would each write what they saw, and the later
write would drop the other's rows. The lock is an exclusive ``flock`` on ``<home>/locks/<shift>.lock``: the
operating system releases it when the process ends, however it ends, so a killed command never leaves a stale lock.
"""

from __future__ import annotations

import fcntl
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

from models.errors import TryAgainLater


class ShiftBusy(TryAgainLater, RuntimeError):
    """Another command holds the shift; the message names it and says what to do."""


@contextmanager
def shift_lock(home: Path, shift_id: str, command: str) -> Iterator[None]:
    """Hold the shift's lock for the block, or raise :class:`ShiftBusy` at once if another command holds it.

    Args:
        home: Workspace directory.
        shift_id: The shift (already validated).
        command: What this process does with it, shown to a command that finds the shift busy.
    """
    path = home / "locks" / f"{shift_id}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a+", encoding="utf-8") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another command"
            raise ShiftBusy(
                f"shift {shift_id} is busy: {holder} is working on it; run this command again when it has finished"
            ) from None
        since = datetime.now(timezone.utc).isoformat(timespec="seconds")
        handle.truncate(0)
        handle.write(f"'{command}' (pid {os.getpid()} on {socket.gethostname()}, since {since})")
        handle.flush()
        try:
            yield
        finally:
            handle.truncate(0)
            fcntl.flock(handle, fcntl.LOCK_UN)
