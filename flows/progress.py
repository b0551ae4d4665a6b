"""Progress display for long flows, shown when the command line asks for it (a terminal), silent otherwise."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TypeVar

from prefect.futures import PrefectFuture, as_completed
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
_enabled = False
console = Console(stderr=True)


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


def track_futures(
    futures: list[PrefectFuture[T]], description: str, weights: list[int] | None = None, unit: str = ""
) -> Iterator[PrefectFuture[T]]:
    """Yield futures as they complete, advancing a bar by each future's weight (e.g. frames in its batch)."""
    weights = weights or [1] * len(futures)
    weight_of = {id(future): weight for future, weight in zip(futures, weights, strict=True)}
    with _bar() as progress:
        bar = progress.add_task(description, total=sum(weights), unit=unit)
        for future in as_completed(futures):
            progress.advance(bar, weight_of[id(future)])
            yield future


def track(items: Iterable[T], description: str, total: int | None = None, unit: str = "") -> Iterator[T]:
    """Iterate ``items`` with a progress bar."""
    with _bar() as progress:
        bar = progress.add_task(description, total=total, unit=unit)
        for item in items:
            yield item
            progress.advance(bar)
