"""PNG writing and output-folder housekeeping for the generators.

Pillow's PNG encoder is deterministic (no timestamps), which is what makes "same seed, same
bytes" hold. Frames are written with zlib level 1: sensor noise makes higher levels barely
smaller but several times slower, and writing dominates generation time otherwise.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

FRAME_COMPRESS_LEVEL = 1
MASK_COMPRESS_LEVEL = 6


def write_rgb(path: Path, image: np.ndarray) -> None:
    """Write an (H, W, 3) uint8 array as an RGB PNG."""
    Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8)).save(
        path, format="PNG", compress_level=FRAME_COMPRESS_LEVEL
    )


def write_mask(path: Path, mask: np.ndarray, value: int = 255) -> None:
    """Write a boolean mask as a single-channel uint8 PNG with ``value`` where True, 0 elsewhere."""
    arr = np.where(mask, np.uint8(value), np.uint8(0)).astype(np.uint8)
    Image.fromarray(arr).save(path, format="PNG", compress_level=MASK_COMPRESS_LEVEL)


def clear_generated(folder: Path, patterns: Iterable[str]) -> None:
    """Delete files a previous run left in ``folder`` matching ``patterns`` (only our own names).

    Regenerating into the same folder with fewer images must not leave stale frames that the
    labels file no longer lists; anything else in the folder is left alone.
    """
    if not folder.is_dir():
        return
    for pattern in patterns:
        for p in folder.glob(pattern):
            if p.is_file():
                p.unlink()


class BackgroundWriter:
    """Write PNGs on one helper thread while the caller renders the next frame.

    PNG encoding (zlib) takes longer than rendering a frame and Pillow releases the GIL while
    encoding, so overlapping the two nearly halves the wall time of a shift on two cores. At most
    ``max_pending`` write jobs are queued, which bounds memory to a few frames. Use as a context
    manager: leaving the block waits for all writes and re-raises the first error.
    """

    def __init__(self, max_pending: int = 2) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="synth-png")
        self._pending: deque[Future[None]] = deque()
        self._max = max_pending

    def submit(self, fn: Callable[..., None], *args: object) -> None:
        """Queue ``fn(*args)``; blocks while ``max_pending`` jobs are already queued."""
        while len(self._pending) >= self._max:
            self._pending.popleft().result()
        self._pending.append(self._pool.submit(fn, *args))

    def __enter__(self) -> BackgroundWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            while self._pending:
                self._pending.popleft().result()
        finally:
            self._pool.shutdown(wait=True, cancel_futures=True)
