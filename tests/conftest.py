"""Shared fixtures: an isolated Prefect database and API for the session, a temporary workspace per test."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

# Isolate Prefect before it is imported anywhere: its own database in a temporary folder, no telemetry.
# A folder of this run's own (two suites on one machine must not delete each other's Prefect database).
# Under pytest-xdist (``make test`` runs two workers) each worker has its own folder below the run's.
_PREFECT_HOME = Path(
    os.environ.setdefault("DEFECTFLOW_TEST_PREFECT_HOME", tempfile.mkdtemp(prefix="defectflow-test-prefect-"))
) / os.environ.get("PYTEST_XDIST_WORKER", "")
os.environ["PREFECT_HOME"] = str(_PREFECT_HOME)
os.environ.pop("PREFECT_API_URL", None)
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.pop("MLFLOW_TRACKING_URI", None)
os.environ.pop("DEFECTFLOW_HOME", None)
os.environ.pop("DEFECTFLOW_DASK_ADDRESS", None)
# Tests choose their weights explicitly (small random backbones; the shared ImageNet file in tests marked `shared`).
for _setting in ("DEFECTFLOW_TEACHER_WEIGHTS", "DEFECTFLOW_ENCODER_WEIGHTS", "DEFECTFLOW_WEIGHTS_DIR"):
    os.environ.pop(_setting, None)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Keep what shares an expensive fixture on one xdist worker (``--dist loadgroup``), so it is built once.

    Every test of the session ``workspace`` runs on one worker; every other test stays with its module (module
    fixtures). Runs before xdist reads the groups; without xdist the marks change nothing.
    """
    for item in items:
        group = "workspace" if "workspace" in getattr(item, "fixturenames", ()) else item.nodeid.split("::")[0]
        item.add_marker(pytest.mark.xdist_group(group))


@pytest.fixture(scope="session")
def prefect_api() -> Iterator[str]:
    """One real Prefect API server for the whole session, and one two-worker Dask ``LocalCluster`` beside it.

    Flow runs in tests use the cluster as an existing one (``tests.pipeline.runner``): the path a multi-node
    deployment takes with ``DEFECTFLOW_DASK_ADDRESS``, without paying a cluster start per run. Its workers are
    started after the API, so they inherit its URL. Tests that kill workers or the scheduler start their own.
    """
    import shutil

    from distributed import LocalCluster

    shutil.rmtree(_PREFECT_HOME, ignore_errors=True)
    _PREFECT_HOME.mkdir(parents=True)
    from flows.runtime import prefect_api as start
    from tests.pipeline import SHARED_CLUSTER

    with start() as url:
        cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
        os.environ[SHARED_CLUSTER] = cluster.scheduler_address
        try:
            yield url
        finally:
            os.environ.pop(SHARED_CLUSTER, None)
            cluster.close()


@pytest.fixture
def one_torch_thread() -> Iterator[None]:
    """One intra-op thread for the test (see :mod:`tests.threads`)."""
    from tests.threads import one_torch_thread as single_thread

    with single_thread():
        yield


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """A fresh, empty workspace."""
    path = tmp_path / "home"
    path.mkdir()
    return path


@pytest.fixture(scope="session")
def workspace(tmp_path_factory: pytest.TempPathFactory, prefect_api: str):
    """One real pipeline workspace for the session: data, trained and promoted models, an ingested shift."""
    from tests.pipeline import build_workspace

    return build_workspace(tmp_path_factory.mktemp("pipeline"))


@pytest.fixture(scope="session")
def scored(workspace):
    """The session's shift (``tests.pipeline.SHIFT``) scored once by the real flow: the scoring tests check it, the
    review app's tests serve it."""
    from tests.pipeline import SHIFT, score_shift

    return score_shift(workspace, SHIFT, batch_size=3)
