"""Where a scoring batch spends its time: seconds per phase, measured on the worker and summed over a run.

A batch reports its phases with its records, so the flow can say where a run's time went (``benchmarks/scoring.py``
prints the table) without a profiler. Light on purpose: the flow process imports it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

#: In the order a batch goes through them: get the models (zero once loaded), read the frames from zarr, segment,
#: crop to the component, detect, paste (resize each map to its box), write (heatmaps and the part table), overlay
#: (draw the flagged frames' overlays for the report; the bare path of ``benchmarks/scoring.py`` draws none).
PHASES = ("models", "read", "segment", "crop", "detect", "paste", "write", "overlay")


class PhaseClock:
    """Seconds spent per phase of one batch; ``with clock("read"): ...`` adds the block's time to ``read``."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = dict.fromkeys(PHASES, 0.0)

    @contextmanager
    def __call__(self, phase: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[phase] += time.perf_counter() - start


@dataclass
class ScoredBatch:
    """What a scoring task returns: one record per frame, the seconds the batch spent per phase, and the paths of
    the overlays it drew."""

    rows: list[dict[str, Any]]
    seconds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(PHASES, 0.0))
    overlays: list[str] = field(default_factory=list)


def add_seconds(total: dict[str, float], more: Mapping[str, float]) -> dict[str, float]:
    """Add one batch's seconds per phase to ``total`` (in place) and return it."""
    for phase, seconds in more.items():
        total[phase] = total.get(phase, 0.0) + seconds
    return total
