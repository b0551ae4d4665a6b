"""``defectflow export --format onnx``: the export agrees with torch, a disagreeing one is refused, scoring runs the
export with the same scores and decisions, and a damaged export is refused by its digest.

One tiny random-weights detector (ResNet18 at 64 px, one ViT layer, one block per student stage: exporting costs
seconds per graph node) is registered in a workspace of this module and exported once; the tests share that export.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import onnx
import pytest
from mlflow import MlflowClient
from onnx import numpy_helper
from typer.testing import CliRunner

from flows.cli import app
from models.detector.builder import build_detector
from models.detector.calibration import calibrate
from models.detector.config import DetectorConfig
from models.detector.export_agreement import MAP_TOLERANCE, agreement_crops
from models.detector.inference import score_crops
from models.detector.onnx_export import read_metadata
from models.detector.onnx_package import ONNX_FILE, RECORD_FILE, ExportRecord, read_record, runtime_for
from models.detector.onnx_runtime import OnnxDetector, load_onnx_detector
from models.detector.package import save_detector
from models.packaging import DamagedWeights, file_sha256
from storage.frame_store import FrameStore
from storage.registry import DamagedModel, resolve_model, version_tags
from storage.settings import DETECTOR_RUNTIME_SETTING, Settings, SettingsError, detector_runtime, load_settings
from storage.tracking import EXPERIMENT_TRAINING, tracked_run
from tasks import export_model as export_task
from tasks.model_cache import get_detector
from tasks.model_ref import ModelRef
from tasks.publish_model import publish_model
from tasks.score_frames import score_frames
from tests.threads import one_torch_thread

VERSION_URI = "models:/detector/1"


@dataclass
class Tiny:
    """The module's workspace and four crops of the check, two on each side of the detector's threshold."""

    settings: Settings
    frames: dict[str, np.ndarray]


@pytest.fixture(scope="module")
def registered(tmp_path_factory: pytest.TempPathFactory) -> Tiny:
    """A workspace whose registry holds one tiny calibrated detector as ``detector`` v1.

    Its thresholds sit at the median score of the export check's crops, so decisions go both ways there.
    """
    root = tmp_path_factory.mktemp("onnx")
    settings = load_settings(root / "home").ensure()
    config = DetectorConfig.small(image_size=64, teacher_weights="none", vit_depth=1, student_blocks=(1, 1, 1))
    model = build_detector(config, load_pretrained=False).eval()
    crops = agreement_crops(64)
    with one_torch_thread():
        scored = score_crops(model, crops)
    threshold = float(np.median(scored.raw_scores))
    calibration = replace(
        calibrate(scored.raw_scores, scored.raw_maps), image_threshold=threshold, pixel_threshold=threshold
    )
    package = save_detector(root / "package", model, calibration)
    with tracked_run(settings, EXPERIMENT_TRAINING, run_name="tiny-detector") as run:
        version = publish_model(settings, "detector", package, run.info.run_id, tags={})
    assert version == "1"
    order = np.argsort(scored.raw_scores)
    frames = {f"frame-{rank}": crops[index] for rank, index in enumerate(order[[0, 1, -2, -1]])}
    return Tiny(settings, frames)


@pytest.fixture(scope="module")
def exported(registered: Tiny) -> tuple[Tiny, str]:
    """``defectflow export`` of v1, run once for the module; the workspace and the command's output."""
    with one_torch_thread():
        result = CliRunner().invoke(app, ["export", "--model", VERSION_URI, "--home", str(registered.settings.home)])
    assert result.exit_code == 0, result.output
    return registered, result.output


def _package(settings: Settings) -> Path:
    return resolve_model(settings, VERSION_URI, "detector").local_dir


def _artifact(settings: Settings, name: str) -> Path:
    """A file of v1's model directory in the MLflow artifact store."""
    client = MlflowClient(settings.tracking_uri)
    run_id = client.get_model_version("detector", "1").run_id
    return Path(urlparse(client.get_run(run_id).info.artifact_uri).path) / "model" / name


def test_export_adds_a_graph_that_agrees_with_torch_and_keeps_the_version_s_digests(
    exported: tuple[Tiny, str],
) -> None:
    tiny, output = exported
    settings = tiny.settings
    assert "max map difference" in output and "ONNX Runtime img/s" in output and "torch img/s" in output
    assert "[torch.onnx]" not in output, "the exporter's progress lines are not the command's output"
    package = _package(settings)
    record = read_record(package)
    assert record is not None
    assert record.agreement["max_map_difference"] <= MAP_TOLERANCE
    assert record.agreement["differing_decisions"] == 0
    assert 0 < record.agreement["anomalous"] < record.agreement["crops"], "the check crops straddle the threshold"
    assert record.runtime in ("onnx", "torch") and "img/s" in record.runtime_reason
    tags = version_tags(settings, "detector", "1")
    for name in (ONNX_FILE, RECORD_FILE, "weights.pt", "defectflow_model.json"):
        assert tags[f"sha256/{name}"] == file_sha256(package / name) == file_sha256(_artifact(settings, name))
    # an ONNX-only reader finds the calibration in the graph and beside it
    metadata = read_metadata(package / ONNX_FILE)
    assert metadata["calibration"] == record.calibration
    assert metadata["preprocessing"]["image_size"] == 64


def test_an_export_that_disagrees_with_torch_is_refused_and_nothing_is_written(
    exported: tuple[Tiny, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = exported[0].settings
    good = _package(settings) / ONNX_FILE

    def tampered_export(model: object, path: Path, metadata: object = None) -> Path:
        graph = onnx.load(str(good))
        # The student's largest weight: a teacher block's last weight may sit before a zero-initialised
        # BatchNorm (timm's random init), where flipping it changes nothing.
        student = [tensor for tensor in graph.graph.initializer if ".student." in tensor.name]
        largest = max(student, key=lambda tensor: int(np.prod(tensor.dims)))
        largest.CopyFrom(numpy_helper.from_array(-numpy_helper.to_array(largest), largest.name))
        onnx.save(graph, str(path))
        return path

    monkeypatch.setattr(export_task, "export_onnx", tampered_export)

    def state() -> tuple[dict[str, str], str, str]:
        return (
            version_tags(settings, "detector", "1"),
            file_sha256(_artifact(settings, ONNX_FILE)),
            file_sha256(_package(settings) / ONNX_FILE),
        )

    before = state()
    with one_torch_thread():
        result = CliRunner().invoke(app, ["export", "--model", VERSION_URI, "--replace", "--home", str(settings.home)])
    output = result.output.replace("\n", " ")
    assert result.exit_code == 2, output
    assert "does not score like torch" in output and "maps differ by up to" in output, output
    assert "nothing was added to the package" in output
    assert state() == before


def test_a_package_directory_gets_the_export_in_place_with_the_runtime_it_is_told(
    exported: tuple[Tiny, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    registered = _package(exported[0].settings)
    package = tmp_path / "package"
    package.mkdir()
    for name in ("defectflow_model.json", "weights.pt"):
        (package / name).write_bytes((registered / name).read_bytes())

    def same_graph(model: object, path: Path, metadata: object = None) -> Path:  # the module's export, not a new one
        path.write_bytes((registered / ONNX_FILE).read_bytes())
        return path

    monkeypatch.setattr(export_task, "export_onnx", same_graph)
    arguments = ["export", "--model", str(package), "--runtime", "torch", "--home", str(tmp_path / "home")]
    with one_torch_thread():
        result = CliRunner().invoke(app, arguments)
    assert result.exit_code == 0, result.output
    _, calibration, record = load_onnx_detector(package)
    assert (record.runtime, record.runtime_reason) == ("torch", "set with --runtime torch")
    assert calibration.to_dict() == read_record(registered).calibration  # type: ignore[union-attr]
    assert runtime_for(record, "cpu") == "torch"


def _score(tiny: Tiny, shift: str, runtime: str, monkeypatch: pytest.MonkeyPatch) -> list[dict]:
    settings = tiny.settings
    monkeypatch.setenv(DETECTOR_RUNTIME_SETTING, runtime)
    store = FrameStore(settings.store_path)
    for image_id, pixels in tiny.frames.items():
        store.write_image(shift, image_id, pixels, {})
    ref = ModelRef("detector", str(_package(settings)), VERSION_URI, "1")
    assert isinstance(get_detector(ref)[0], OnnxDetector) == (runtime == "onnx")
    results = settings.results_dir(shift)
    with one_torch_thread():
        return score_frames.fn(str(settings.store_path), str(results), shift, list(tiny.frames), None, ref).rows


def test_scoring_with_the_onnx_export_gives_torch_s_scores_decisions_and_heatmaps(
    exported: tuple[Tiny, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    tiny = exported[0]
    by_torch = _score(tiny, "by-torch", "torch", monkeypatch)
    by_onnx = _score(tiny, "by-onnx", "onnx", monkeypatch)
    store = FrameStore(tiny.settings.store_path)
    for torch_row, onnx_row in zip(by_torch, by_onnx, strict=True):
        assert torch_row["status"] == onnx_row["status"] == "scored"
        assert (torch_row["detector_runtime"], onnx_row["detector_runtime"]) == ("torch-cpu", "onnx-cpu")
        assert torch_row["is_anomalous"] == onnx_row["is_anomalous"]
        assert abs(torch_row["raw_score"] - onnx_row["raw_score"]) <= MAP_TOLERANCE
        torch_map = store.heatmap("by-torch", torch_row["image_id"])[...].astype(np.float32)
        onnx_map = store.heatmap("by-onnx", onnx_row["image_id"])[...].astype(np.float32)
        assert np.abs(torch_map - onnx_map).max() <= 1e-3  # float16 heatmaps: one step near 1 is 4.9e-4
    assert {row["is_anomalous"] for row in by_torch} == {True, False}, "the frames straddle the threshold"


def test_a_damaged_onnx_export_is_refused_by_its_digest(exported: tuple[Tiny, str], tmp_path: Path) -> None:
    settings = exported[0].settings
    artifact = _artifact(settings, ONNX_FILE)
    good = artifact.read_bytes()
    damaged = bytearray(good)
    middle = len(damaged) // 2
    damaged[middle : middle + 64] = bytes(64)
    try:
        artifact.write_bytes(bytes(damaged))
        cache = _package(settings)
        (cache / ONNX_FILE).write_bytes(bytes(damaged))  # the local copy too: the registry's digest refuses it
        with pytest.raises(DamagedModel, match=r"detector v1 in the registry is damaged: detector\.onnx has sha256"):
            resolve_model(settings, VERSION_URI, "detector")
        assert not cache.exists(), "the damaged copy was kept"
    finally:
        artifact.write_bytes(good)
    package = _package(settings)
    copy = tmp_path / "package"
    copy.mkdir()
    for name in (ONNX_FILE, RECORD_FILE):
        (copy / name).write_bytes((package / name).read_bytes())
    load_onnx_detector(copy)
    (copy / ONNX_FILE).write_bytes(bytes(damaged))  # a package directory has no registry: its record refuses it
    with pytest.raises(DamagedWeights, match=r"detector\.onnx has sha256"):
        load_onnx_detector(copy)


def test_workers_run_the_export_only_on_a_cpu_and_as_the_setting_says(monkeypatch: pytest.MonkeyPatch) -> None:
    record = ExportRecord("0" * 64, 64, {}, {}, {}, {}, runtime="onnx", runtime_reason="measured")
    assert runtime_for(record, "cpu") == "onnx"
    assert runtime_for(record, "cuda") == "torch"
    assert runtime_for(record, "cpu", "torch") == "torch"
    assert runtime_for(None, "cpu", "onnx") == "torch"
    assert runtime_for(ExportRecord(**{**record.__dict__, "runtime": "torch"}), "cpu") == "torch"
    monkeypatch.setenv(DETECTOR_RUNTIME_SETTING, "tensorrt")
    with pytest.raises(SettingsError, match="DEFECTFLOW_DETECTOR_RUNTIME='tensorrt' is not one of auto, torch, onnx"):
        detector_runtime()
