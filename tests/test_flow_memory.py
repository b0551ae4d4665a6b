"""The flow process's memory does not grow with the shift (issue #11): what it keeps per batch is bounded.

Two things made it grow by about 40 KB per frame: the flows held every task run's future until the end of a wave
(so a ``LocalCluster``'s scheduler, which runs in the flow process, kept every task with its run spec, Prefect's
serialised context included), and every Dask comm kept its last 1000 messages, each submitted task among them.
Both are checked here structurally, without timing: ``benchmarks/scale.py`` measures the memory itself.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable

import dask.config
import pytest
from distributed.batched import BatchedSend

from flows.batching import batches
from flows.progress import track_batches
from flows.runtime import LOW_LEVEL_LOG_LENGTH


class _Future:
    """Stands in for a Prefect future: finishes on a background thread, like a Dask future."""

    def __init__(self, chunk: list[int]) -> None:
        self.chunk = chunk

    def add_done_callback(self, callback: Callable[[_Future], None]) -> None:
        threading.Timer(0.001, callback, args=(self,)).start()

    def result(self) -> list[int]:
        return self.chunk


@pytest.mark.parametrize("in_flight", [1, 3, 8])
def test_batches_are_submitted_a_few_at_a_time_and_let_go_once_finished(in_flight: int) -> None:
    alive: list[weakref.ref[_Future]] = []
    most_alive = 0

    def submit(chunk: list[int]) -> _Future:
        nonlocal most_alive
        future = _Future(chunk)
        alive.append(weakref.ref(future))
        most_alive = max(most_alive, sum(ref() is not None for ref in alive))
        return future

    seen: list[int] = []
    for chunk, future in track_batches(submit, batches(list(range(500)), 4), "test", in_flight=in_flight):
        assert future.result() == chunk
        seen.extend(chunk)
    assert sorted(seen) == list(range(500))  # every batch once
    assert len(alive) == 125
    # in flight, plus the one the caller's loop variable still holds while the next is submitted
    assert most_alive <= in_flight + 1
    del chunk, future
    assert all(ref() is None for ref in alive)


def test_dask_keeps_short_debugging_logs_of_its_messages() -> None:
    assert dask.config.get("distributed.admin.low-level-log-length") == LOW_LEVEL_LOG_LENGTH <= 100
    assert BatchedSend(interval="5ms").recent_message_log.maxlen == LOW_LEVEL_LOG_LENGTH


def test_a_length_the_user_configures_still_wins() -> None:
    with dask.config.set({"distributed.admin.low-level-log-length": 1000}):
        assert BatchedSend(interval="5ms").recent_message_log.maxlen == 1000
