"""The flow process stays lean: it imports no torch, and the workers load and warm the models before any batch.

Prefect tasks run on Dask workers, and only their bodies need the models (issue #14, docs/architecture.md). The
run of a real scoring command is checked in ``tests/test_scoring_faults.py`` (its re-run reports its imports);
``benchmarks/scoring.py`` measures the flow process's memory.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from distributed import Client, Worker

from tasks import model_cache
from tasks.model_preload import PLUGIN_NAME, ModelPreload
from tests.pipeline import Workspace, champion_refs, shared_cluster

REPO = Path(__file__).resolve().parents[1]
#: Modules the flow process must not import: the model runtimes, and what only models and training need.
HEAVY = ("torch", "torchvision", "timm", "onnxruntime", "matplotlib")


def test_the_flow_and_command_modules_import_no_torch() -> None:
    check = (
        "import flows.scoring, flows.ingest, flows.verify, flows.cli, sys\n"
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    result = subprocess.run([sys.executable, "-c", check], cwd=REPO, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def _preloaded(dask_worker: Worker) -> tuple[bool, int]:
    return PLUGIN_NAME in dask_worker.plugins, model_cache.loaded_count()


def test_workers_load_the_run_s_models_when_the_preload_is_registered(workspace: Workspace) -> None:
    # the session's workers keep their models (loading them again costs seconds): what is checked is that every
    # worker ran the plugin, which holds them once it returns, before any batch of this test
    with Client(shared_cluster()) as client:
        client.register_plugin(ModelPreload(*champion_refs(workspace.home)), name=PLUGIN_NAME)
        states = client.run(_preloaded).values()
    assert states and all(registered and models >= 2 for registered, models in states)
