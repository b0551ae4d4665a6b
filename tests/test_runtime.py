"""The LocalCluster the flows build: worker processes start without Dask's malloc trim setting, unless asked.

With ``MALLOC_TRIM_THRESHOLD_`` set, glibc maps every array over 128 KiB afresh and scoring ran at half speed
(docs/scoring.md). These tests start real worker processes and read their environment.
"""

from __future__ import annotations

import os
from pathlib import Path

import dask.config
import pytest
from distributed import Client, LocalCluster

from flows.runtime import dask_task_runner
from storage.settings import load_settings

TRIM = "MALLOC_TRIM_THRESHOLD_"


def _worker_trim_settings(home: Path) -> list[str | None]:
    runner = dask_task_runner(load_settings(home), workers=1)
    with LocalCluster(**runner.cluster_kwargs) as cluster, Client(cluster) as client:
        return list(client.run(lambda: os.environ.get(TRIM)).values())


@pytest.fixture
def clean_trim_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No inherited value, and none left behind: the nanny writes its variables into this process's environment."""
    monkeypatch.setenv(TRIM, "placeholder")  # records "unset" so that teardown removes whatever the nanny wrote
    monkeypatch.delenv(TRIM)


def test_workers_start_without_malloc_trim_threshold(tmp_path: Path, clean_trim_env: None) -> None:
    assert _worker_trim_settings(tmp_path) == [None]


def test_a_configured_malloc_trim_threshold_still_reaches_the_workers(tmp_path: Path, clean_trim_env: None) -> None:
    with dask.config.set({f"distributed.nanny.pre-spawn-environ.{TRIM}": 65536}):
        assert _worker_trim_settings(tmp_path) == ["65536"]
