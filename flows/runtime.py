"""Where flows run: the Prefect API every process reports to, and the Dask cluster tasks fan out over.

On a workstation nothing needs configuring: without ``PREFECT_API_URL`` one temporary Prefect server is
started for the command and its address is handed to the ``LocalCluster`` workers, so the flow and all its
tasks land in the same Prefect database (``prefect server start`` shows them afterwards). With a Prefect
server and a Dask scheduler, only settings change: ``PREFECT_API_URL`` and ``DEFECTFLOW_DASK_ADDRESS``.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import dask.config
from prefect.logging.handlers import APILogWorker
from prefect.settings import PREFECT_API_URL, temporary_settings
from prefect_dask import DaskTaskRunner

from storage.settings import Settings

LOW_LEVEL_LOG_LENGTH = 100  # messages, transitions and worker events Dask keeps per comm / per process

# Dask's nannies start workers with MALLOC_TRIM_THRESHOLD_=65536. Setting it turns off glibc's adaptive mmap
# threshold, so every array over 128 KiB is a fresh mmap whose pages fault in on first touch: scoring a
# 2048x1536 frame spent half its time in the kernel (3.2 against 6.9 frames/s per worker; docs/scoring.md). Our
# default drops the variable; a value the user configures for Dask still wins (update_defaults keeps it).
dask.config.update_defaults({"distributed": {"nanny": {"pre-spawn-environ": {"MALLOC_TRIM_THRESHOLD_": None}}}})
# Every Dask comm keeps its last ``low-level-log-length`` messages (default 1000) for debugging, and every task
# submitted through Prefect carries Prefect's serialised context (some 30 KB of Python objects, and the scheduler
# holds a second copy in its messages to the workers). With one task per batch of frames, the flow process,
# where a ``LocalCluster``'s scheduler runs, grew by about 40 KB per frame until the logs were full (issue #11).
# A short log keeps the debugging aid and bounds that memory at a few MB whatever the shift's size; a value the
# user configures for Dask still wins.
dask.config.update_defaults({"distributed": {"admin": {"low-level-log-length": LOW_LEVEL_LOG_LENGTH}}})


@contextmanager
def children_ignore_ctrl_c() -> Iterator[None]:
    """Start processes inside this block so that Ctrl-C does not reach them; only the command is interrupted.

    Ctrl-C signals every process of the terminal's process group. The temporary Prefect server must outlive it
    (the flow reports its crash there; without a server the report retries for minutes), and Dask workers that
    took it would die with tracebacks. A child inherits SIGINT ignored (kept by Python and multiprocessing) and
    blocked (kept even where a server installs its own handler, as uvicorn does). The command stops its children
    itself. Inside the block (the seconds a server or cluster takes to start) the command ignores Ctrl-C too.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    handler = signal.signal(signal.SIGINT, signal.SIG_IGN)
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, handler)
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)


_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextmanager
def signals_deferred() -> Iterator[None]:
    """Hold SIGINT and SIGTERM that arrive inside the block and deliver them when it ends.

    Submitting a task serialises Prefect's context with pydantic, which turns an interrupt raised inside it
    (Ctrl-C, or Prefect's SIGTERM handler) into a serialisation error: the run then fails with that traceback
    instead of ending as interrupted. Delivered after the block, the same signal interrupts cleanly.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending: list[int] = []
    handlers = {number: signal.signal(number, lambda n, _f: pending.append(n)) for number in _STOP_SIGNALS}
    try:
        yield
    finally:
        for number, handler in handlers.items():
            signal.signal(number, handler)
        for number in dict.fromkeys(pending):
            os.kill(os.getpid(), number)


class _CommandTaskRunner(DaskTaskRunner):
    """The ``DaskTaskRunner`` of a command: submits without being torn by a signal (see :func:`signals_deferred`),
    and starts a ``LocalCluster`` whose workers do not take Ctrl-C (see :func:`children_ignore_ctrl_c`)."""

    @property
    def client(self) -> Any:
        if self._client is not None or self.address:  # no window in which Ctrl-C is ignored once started
            return super().client
        with children_ignore_ctrl_c():
            return super().client

    def submit(self, *args: Any, **kwargs: Any) -> Any:
        with signals_deferred():
            return super().submit(*args, **kwargs)


@contextmanager
def prefect_api() -> Iterator[str]:
    """Yield the Prefect API URL all processes of this command use, starting a temporary server if none is set.

    The URL goes into ``os.environ`` so that Dask worker processes started afterwards inherit it; otherwise each
    worker would start a temporary server of its own.
    """
    configured = PREFECT_API_URL.value()
    if configured:
        os.environ.setdefault("PREFECT_API_URL", configured)
        yield configured
        return
    from prefect.server.api.server import SubprocessASGIServer

    server = SubprocessASGIServer()
    with children_ignore_ctrl_c():  # the flow reports its crash to the server after a Ctrl-C, so it must outlive one
        server.start()
    url = server.api_url
    os.environ["PREFECT_API_URL"] = url
    try:
        with temporary_settings({PREFECT_API_URL: url}):
            yield url
    except BaseException:
        # Now: a process ended by a signal may never reach the stop Prefect registers for exit. The run's last
        # logs go to the server first.
        APILogWorker.drain_all(timeout=5)
        server.stop()
        raise
    finally:
        os.environ.pop("PREFECT_API_URL", None)


def local_worker_count(settings: Settings, workers: int | None = None) -> int:
    """Worker processes for a ``LocalCluster``: the argument, the setting, or one per two cores (at least 2)."""
    if workers:
        return workers
    if settings.dask_workers:
        return settings.dask_workers
    return max(2, (os.cpu_count() or 2) // 2)


def dask_task_runner(
    settings: Settings, address: str | None = None, workers: int | None = None, threads_per_worker: int = 1
) -> DaskTaskRunner:
    """A ``DaskTaskRunner`` on an existing scheduler (argument or ``DEFECTFLOW_DASK_ADDRESS``) or a ``LocalCluster``.

    Workers of a ``LocalCluster`` inherit this process's environment, including the Prefect API URL; workers of
    an existing cluster must be started with ``PREFECT_API_URL`` pointing at the Prefect server.
    """
    address = address or settings.dask_address
    if address:
        return _CommandTaskRunner(address=address)
    logging.getLogger("distributed").setLevel(logging.WARNING)
    return _CommandTaskRunner(
        cluster_kwargs={
            "n_workers": local_worker_count(settings, workers),
            "threads_per_worker": threads_per_worker,
            "processes": True,
            "dashboard_address": settings.dask_dashboard,
            "silence_logs": logging.WARNING,
        }
    )


def default_task_runner() -> DaskTaskRunner:
    """The task runner flows are declared with: Dask, from the environment's settings (used by deployments).

    The command line replaces it per run with ``--dask-address`` and ``--workers``. It is built when a flow module
    is imported, so a bad setting must not raise here: the flow's own ``load_settings`` reports it, and the
    command line says what to fix before any flow runs.
    """
    from storage.settings import SettingsError, load_settings

    try:
        return dask_task_runner(load_settings())
    except SettingsError:
        return DaskTaskRunner()


def flow_client() -> Any | None:
    """The Dask client of the current flow run's task runner (its cluster starts now if it has not); else ``None``.

    ``distributed.get_client()`` does not find it inside a flow (prefect-dask's client is not the process's
    default one), which left scoring without its GPU annotation and batching at the smallest in-flight limit.
    ``None`` outside a flow run or on another task runner.
    """
    from prefect.context import FlowRunContext

    runner = getattr(FlowRunContext.get(), "task_runner", None)
    return runner.client if isinstance(runner, DaskTaskRunner) else None


def preload_on_workers(plugin: Any) -> bool:
    """Register a Dask worker plugin on the current flow's cluster, under the plugin's name; ``False`` without one.

    The call returns once every worker has run the plugin's ``setup``; workers that join later run it when they
    join (the scheduler keeps the plugin). A plugin of the same name, a previous run's, is replaced. A flow run on
    another task runner preloads nothing.
    """
    client = flow_client()
    if client is None:
        return False
    client.register_plugin(plugin, name=plugin.name)
    return True


def import_in_background(*modules: str) -> threading.Thread:
    """Import ``modules`` in a daemon thread, so that a step after the batches finds them loaded.

    The flow process mostly waits on its workers while they score; MLflow alone takes about 1.7 s to import, which
    the finish step of every scoring run paid after the last batch (docs/scoring.md, "The flow costs nothing").
    A module that fails to import here is left alone: the step that needs it imports it again and reports it.
    """

    def run() -> None:
        for name in modules:
            with contextlib.suppress(Exception):
                importlib.import_module(name)

    thread = threading.Thread(target=run, name="defectflow-imports", daemon=True)
    thread.start()
    return thread
