"""One torch intra-op thread for CPU-heavy tests: on a busy shared machine two OpenMP threads spin and run many
times slower (docs/detector.md, "CPU threads")."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


@contextmanager
def one_torch_thread() -> Iterator[None]:
    """Run the block with one torch thread and restore the previous count afterwards."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
