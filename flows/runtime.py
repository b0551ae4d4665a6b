"""Where flows run: the Prefect API every process reports to, and the Dask cluster tasks fan out over.

On a workstation nothing needs configuring: without ``PREFECT_API_URL`` one temporary Prefect server is
started for the command and its address is handed to the ``LocalCluster`` workers, so the flow and all its
tasks land in the same Prefect database (``prefect server start`` shows them afterwards). With a Prefect
server and a Dask scheduler, only settings change: ``PREFECT_API_URL`` and ``DEFECTFLOW_DASK_ADDRESS``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager

from prefect.settings import PREFECT_API_URL, temporary_settings
from prefect_dask import DaskTaskRunner

from storage.settings import Settings


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
    server.start()
    url = server.api_url
    os.environ["PREFECT_API_URL"] = url
    try:
        with temporary_settings({PREFECT_API_URL: url}):
            yield url
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
        return DaskTaskRunner(address=address)
    logging.getLogger("distributed").setLevel(logging.WARNING)
    return DaskTaskRunner(
        cluster_kwargs={
            "n_workers": local_worker_count(settings, workers),
            "threads_per_worker": threads_per_worker,
            "processes": True,
            "dashboard_address": os.environ.get("DEFECTFLOW_DASK_DASHBOARD", ":0"),
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
