"""Progress display for long flows, shown when the command line asks for it (a terminal), silent otherwise.

Batches of a shift are submitted through :func:`track_batches`, which keeps only a bounded number of task runs in
flight and lets go of each one as soon as the flow has its result, so the flow process's memory does not grow
with the shift.
"""

from __future__ import annotations

import queue
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TypeVar

from prefect.futures import PrefectFuture
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

T = TypeVar("T")
R = TypeVar("R")
_enabled = False
console = Console(stderr=True)

# Task runs in flight per worker thread: enough that a worker never waits for the flow to submit its next batch.
IN_FLIGHT_PER_THREAD = 4
MIN_IN_FLIGHT = 16


def enable_progress(enabled: bool = True) -> None:
    """Turn progress bars on for this process (the CLI does, deployments do not)."""
    global _enabled
    _enabled = enabled


def _bar() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[unit]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        disable=not _enabled,
        transient=False,
    )


def in_flight_limit() -> int:
    """Task runs to keep submitted at once: a few per thread of the current Dask cluster, at least ``MIN_IN_FLIGHT``."""
    from flows.runtime import flow_client

    try:
        client = flow_client()
        threads = sum(client.nthreads().values()) if client else 0
    except Exception:  # no Dask client (another task runner, no flow run): the floor
        threads = 0
    return max(MIN_IN_FLIGHT, IN_FLIGHT_PER_THREAD * threads)


def track_batches(
    submit: Callable[[list[T]], PrefectFuture[R]],
    chunks: Sequence[list[T]],
    description: str,
    unit: str = "",
    in_flight: int | None = None,
) -> Iterator[tuple[list[T], PrefectFuture[R]]]:
    """Submit one task run per chunk and yield ``(chunk, future)`` as each finishes, advancing a bar by its size.

    At most ``in_flight`` task runs (default :func:`in_flight_limit`) are submitted at a time, and a finished one
    is referenced only until the caller moves to the next: a Dask future the flow still holds keeps its task in
    the scheduler (which runs in the flow process with a ``LocalCluster``), together with its run spec (Prefect's
    serialised context, some 30 KB, and the batch's arguments) and its result. Holding every future of a shift
    made the flow process grow with the shift (issue #11). Chunks are submitted in order; results come in the
    order they finish.
    """
    finished: queue.SimpleQueue[int] = queue.SimpleQueue()
    running: dict[int, tuple[list[T], PrefectFuture[R]]] = {}
    upcoming: Iterator[tuple[int, list[T]]] = iter(enumerate(chunks))
    limit = in_flight

    def fill() -> None:
        nonlocal limit
        while limit is None or len(running) < limit:
            number, chunk = next(upcoming, (-1, []))
            if number < 0:
                return
            future = submit(chunk)
            running[number] = (chunk, future)
            future.add_done_callback(lambda _done, number=number: finished.put(number))
            if limit is None:  # the cluster exists once the first task run is submitted
                limit = in_flight_limit()

    with _bar() as progress:
        bar = progress.add_task(description, total=sum(len(c) for c in chunks), unit=unit)
        fill()
        while running:
            chunk, future = running.pop(finished.get())
            progress.advance(bar, len(chunk))
            yield chunk, future
            del chunk, future
            fill()


def track(items: Iterable[T], description: str, total: int | None = None, unit: str = "") -> Iterator[T]:
    """Iterate ``items`` with a progress bar."""
    with _bar() as progress:
        bar = progress.add_task(description, total=total, unit=unit)
        for item in items:
            yield item
            progress.advance(bar)
