"""prefect.yaml: every deployment's entrypoint imports to a flow whose parameters match."""

from __future__ import annotations

import importlib.util
import inspect
from pathlib import Path

import yaml
from prefect import Flow

ROOT = Path(__file__).resolve().parents[1]
EXPECTED = {"ingest-shift", "nightly-scoring", "weekly-retrain", "promote"}


def _load_flow(entrypoint: str) -> Flow:
    path, name = entrypoint.split(":")
    module_path = ROOT / path
    assert module_path.is_file(), f"entrypoint file {path} does not exist"
    module_name = path.removesuffix(".py").replace("/", ".")
    spec = importlib.util.find_spec(module_name)
    assert spec is not None and Path(spec.origin).resolve() == module_path.resolve()
    module = importlib.import_module(module_name)
    return getattr(module, name)


def test_every_deployment_entrypoint_is_a_flow_with_matching_parameters() -> None:
    config = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    deployments = {d["name"]: d for d in config["deployments"]}
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
