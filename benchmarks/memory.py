"""Peak-memory sampling of this process and of its Dask worker processes, for the benchmarks."""

from __future__ import annotations

import contextlib
import threading
import time
from dataclasses import dataclass, field

import psutil

_SERVER_MARKERS = ("uvicorn", "prefect.server", "prefect server")


def _is_server(process: psutil.Process) -> bool:
    try:
        command = " ".join(process.cmdline())
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return True
    return any(marker in command for marker in _SERVER_MARKERS)


@dataclass
class PeakMemory:
    """Samples RSS every ``interval`` seconds while active; peaks in MiB."""

    interval: float = 0.05
    flow_peak_mib: float = 0.0
    worker_peak_mib: float = 0.0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def _sample(self) -> None:
        me = psutil.Process()
        while not self._stop.is_set():
            try:
                self.flow_peak_mib = max(self.flow_peak_mib, me.memory_info().rss / 2**20)
                for child in me.children(recursive=True):
                    if _is_server(child):
                        continue
                    with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
                        self.worker_peak_mib = max(self.worker_peak_mib, child.memory_info().rss / 2**20)
            except psutil.NoSuchProcess:
                pass
            time.sleep(self.interval)

    def __enter__(self) -> PeakMemory:
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join()
