"""Split work into batches: few enough tasks to keep orchestration overhead small, enough to keep workers busy."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

T = TypeVar("T")


def batches(items: Sequence[T], size: int) -> list[list[T]]:
    """Consecutive slices of at most ``size`` items."""
    if size < 1:
        raise ValueError(f"batch size must be at least 1, got {size}")
    return [list(items[start : start + size]) for start in range(0, len(items), size)]
