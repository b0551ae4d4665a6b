"""What every training loop here needs, written once: seeding, a torch thread scope, a wall-clock budget and the
per-epoch history.

The segmenter's and the detector's loops (``models/segmentation/training.py``, ``models/detector/training.py``)
differ in what they optimise; they share these conventions, so that a budget, a seed or a history entry means the
same thing in both. The non-finite guard they share is :mod:`models.divergence_guard`.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch

EpochCallback = Callable[[dict[str, Any]], None]


def seed_everything(seed: int) -> None:
    """Seed torch (CPU and CUDA) and numpy's legacy global generator."""
    torch.manual_seed(seed)
    np.random.seed(seed % (2**32))


@contextlib.contextmanager
def torch_threads(num_threads: int | None) -> Iterator[None]:
    """Use ``num_threads`` intra-op threads inside the block, restoring the previous setting after it.

    ``None`` leaves torch's setting. On a shared, busy machine 1 thread is often faster than 2: OpenMP threads spin
    at every barrier while another process holds the other core.
    """
    if num_threads is None:
        yield
        return
    if num_threads < 1:
        raise ValueError(f"num_threads must be positive or None, got {num_threads}")
    previous = torch.get_num_threads()
    torch.set_num_threads(num_threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


class TimeBudget:
    """A wall-clock budget that starts when it is created (``max_minutes=None``: no budget).

    Raises:
        ValueError: When ``max_minutes`` is not positive.
    """

    def __init__(self, max_minutes: float | None) -> None:
        if max_minutes is not None and max_minutes <= 0:
            raise ValueError(f"max_minutes must be positive or None, got {max_minutes}")
        self.max_minutes = max_minutes
        self.seconds = None if max_minutes is None else max_minutes * 60.0
        self.start = time.monotonic()

    def elapsed(self) -> float:
        """Seconds since the budget started."""
        return time.monotonic() - self.start

    def fraction_used(self) -> float:
        """Share of the budget used so far (0 without a budget)."""
        return 0.0 if self.seconds is None else self.elapsed() / self.seconds

    def exceeded(self) -> bool:
        """Whether the budget has run out."""
        return self.seconds is not None and self.elapsed() > self.seconds

    def leaves_room_for(self, seconds: float) -> bool:
        """Whether ``seconds`` more work still ends inside the budget."""
        return self.seconds is None or self.elapsed() + seconds < self.seconds

    def stop_reason(self, epochs: int) -> str:
        """The history's record of a run the budget ended."""
        return f"time budget of {self.max_minutes} min reached after {epochs} epoch(s)"


class EpochHistory:
    """One dict per epoch, in order; each entry is logged and handed to the caller's callback as it is added.

    Every entry carries ``epoch``, ``seconds`` (that epoch) and ``elapsed`` (since the run started), whatever else
    the loop measures.
    """

    def __init__(self, logger: logging.Logger, budget: TimeBudget, on_epoch: EpochCallback | None = None) -> None:
        self.entries: list[dict[str, Any]] = []
        self._logger = logger
        self._budget = budget
        self._on_epoch = on_epoch

    def add(self, epoch: int, epoch_start: float, measured: dict[str, Any]) -> dict[str, Any]:
        """Record epoch ``epoch`` that began at ``epoch_start`` (``time.monotonic()``) with its measurements."""
        entry = {"epoch": epoch, **measured, "seconds": time.monotonic() - epoch_start}
        entry["elapsed"] = self._budget.elapsed()
        self.entries.append(entry)
        shown = ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in measured.items())
        self._logger.info("epoch %d: %s (%.1f s)", epoch, shown, entry["seconds"])
        if self._on_epoch is not None:
            self._on_epoch(dict(entry))
        return entry

    def __len__(self) -> int:
        return len(self.entries)
