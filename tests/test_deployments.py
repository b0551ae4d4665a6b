"""prefect.yaml: every deployment's entrypoint imports to a flow whose parameters match."""

from __future__ import annotations

import importlib.util
import inspect
import subprocess
import sys
from pathlib import Path

import cloudpickle
import yaml
from prefect import Flow
from prefect.flows import load_flow_from_entrypoint

ROOT = Path(__file__).resolve().parents[1]
EXPECTED = {"ingest-shift", "nightly-scoring", "weekly-retrain", "promote"}


def _deployments() -> dict[str, dict]:
    config = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    return {d["name"]: d for d in config["deployments"]}


def _load_flow(entrypoint: str) -> Flow:
    module_name, name = entrypoint.split(":")
    assert "/" not in module_name and not module_name.endswith(".py"), f"{entrypoint} is not a module path"
    spec = importlib.util.find_spec(module_name)
    assert spec is not None, f"entrypoint module {module_name} does not import"
    assert Path(spec.origin).resolve().is_relative_to(ROOT), f"{module_name} imports from {spec.origin}, not {ROOT}"
    module = importlib.import_module(module_name)
    return getattr(module, name)


def test_every_deployment_entrypoint_is_a_flow_with_matching_parameters() -> None:
    deployments = _deployments()
    assert set(deployments) == EXPECTED
    for name, deployment in deployments.items():
        flow = _load_flow(deployment["entrypoint"])
        assert isinstance(flow, Flow), f"{name}: {deployment['entrypoint']} is not a Prefect flow"
        signature = inspect.signature(flow.fn)
        given = set(deployment.get("parameters", {}))
        unknown = given - set(signature.parameters)
        assert not unknown, f"{name}: parameters {unknown} are not parameters of {flow.name}"
        required = {p.name for p in signature.parameters.values() if p.default is inspect.Parameter.empty}
        assert required <= given, f"{name}: required parameters {required - given} are not set"
        assert deployment["work_pool"]["name"] == "defectflow"


def test_scheduled_deployments_have_their_crons() -> None:
    config = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    crons = {d["name"]: [s["cron"] for s in d.get("schedules", [])] for d in config["deployments"]}
    assert crons["nightly-scoring"] == ["0 2 * * *"]
    assert len(crons["weekly-retrain"]) == 1 and crons["weekly-retrain"][0].split()[-1] != "*"
    assert crons["ingest-shift"] == [] and crons["promote"] == []


def test_flows_loaded_as_a_worker_loads_them_unpickle_in_a_process_started_elsewhere(tmp_path: Path) -> None:
    """The scheduler and workers of an existing Dask cluster unpickle each task with the flow run's context, which
    holds the flow; they import it by its module name, so the entrypoint must name a module they can import."""
    deployments = _deployments()
    flows = [load_flow_from_entrypoint(d["entrypoint"]) for d in deployments.values()]  # as a worker's flow run does
    check = "import pickle, sys; print(' '.join(f.name for f in pickle.loads(sys.stdin.buffer.read())))"
    result = subprocess.run(
        [sys.executable, "-c", check], input=cloudpickle.dumps(flows), cwd=tmp_path, capture_output=True, timeout=300
    )
    assert result.returncode == 0, result.stderr.decode()[-1500:]
    assert result.stdout.decode().split() == [f.name for f in flows]


def test_on_demand_deployments_declare_no_schedule() -> None:
    """Without a ``schedules`` key an interactive ``prefect deploy --all`` stops to ask for a schedule."""
    for name, deployment in _deployments().items():
        assert "schedules" in deployment, f"{name} has no 'schedules' key"
