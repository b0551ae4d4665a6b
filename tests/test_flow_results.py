"""Flow results are frozen dataclasses (flows/results.py): Prefect persists and reads them back like dictionaries."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from prefect.client.orchestration import get_client
from typer.testing import CliRunner

from flows.cli import app
from flows.ingest import ingest_shift
from flows.results import DetectorEvaluation, IngestResult, SegmenterEvaluation
from tests.pipeline import Workspace, runner


def test_a_persisted_flow_result_reads_back_as_the_same_record(home: Path, tmp_path: Path, prefect_api: str) -> None:
    """A real ingest run with its result persisted (Prefect's default serializer: cloudpickle), read back from
    Prefect's result storage through the API's record of the run, as a deployment's caller would."""
    source = tmp_path / "frames"
    source.mkdir()
    for seed in range(2):
        pixels = np.random.default_rng(seed).integers(0, 255, (32, 48, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(source / f"f{seed}.png")
    flow = ingest_shift.with_options(task_runner=runner(home), persist_result=True)
    state = flow(source=str(source), shift_id="S1", home=str(home), return_state=True)
    returned = state.result()
    assert isinstance(returned, IngestResult) and returned.ingested == 2

    with get_client(sync_client=True) as client:
        stored = client.read_flow_run(state.state_details.flow_run_id).state
    assert stored is not None and stored.is_completed()
    read_back = stored.result()
    assert read_back == returned and dataclasses.is_dataclass(read_back)
    assert dataclasses.asdict(read_back)["quarantine_reasons"] == {}
    with pytest.raises(dataclasses.FrozenInstanceError):
        read_back.ingested = 3  # type: ignore[misc]


@pytest.mark.parametrize(
    ("kind", "record", "folder", "printed"),
    [
        ("detector", DetectorEvaluation, "mvtec", "ms per image (forward pass)"),
        ("segmenter", SegmenterEvaluation, "segmentation", "segmenter evaluation"),
    ],
)
def test_evaluate_writes_the_json_it_always_did_and_prints_from_the_record(
    workspace: Workspace, tmp_path: Path, kind: str, record: type, folder: str, printed: str
) -> None:
    """``defectflow evaluate``: the JSON keeps the task's keys (each a field of the flow's record) and the table is
    read from the record's attributes."""
    out = tmp_path / f"{kind}.json"
    data = workspace.data / folder
    result = CliRunner().invoke(
        app, ["evaluate", kind, "--data", str(data), "--json", str(out), "--home", str(workspace.home)]
    )
    assert result.exit_code == 0, result.output
    written = json.loads(out.read_text())
    assert set(written) <= {field.name for field in dataclasses.fields(record)}
    assert written["model_uri"] == f"models:/{kind}@champion" and printed in result.output
