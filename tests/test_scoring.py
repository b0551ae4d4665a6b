"""Nightly scoring end to end: real flow runs on a real LocalCluster against models in a real MLflow registry."""

from __future__ import annotations

import shutil
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import psutil
import pytest
import torch
import zarr
from mlflow import MlflowClient
from PIL import Image
from typer.testing import CliRunner

from flows.cli import app
from flows.ingest import ingest_shift
from flows.results import ScoringResult
from models.packaging import load_model_package, save_model_package
from models.segmentation.builder import SEGMENTER_KIND, segmenter_builder
from storage.frame_store import FrameStore
from storage.registry import CHAMPION, alias_version
from storage.score_parts import PARTS_DIR
from storage.settings import load_settings
from storage.tables import SCORE_COLUMNS, read_manifest, read_scores
from synth.frame import render_empty_belt
from tasks import model_cache
from tasks.score_frames import score_frames
from tests.pipeline import SHIFT, Workspace, champion_refs, ingest_copy, runner, score_shift, shared_cluster

_score = score_shift  # the session's ``scored`` fixture (tests/conftest.py) scores ``SHIFT`` once for all modules


def test_scores_table_has_one_row_per_frame_with_champion_versions(workspace: Workspace, scored: ScoringResult) -> None:
    settings = load_settings(workspace.home)
    scores = read_scores(settings.results_dir(SHIFT))
    manifest = read_manifest(settings.results_dir(SHIFT))
    assert list(scores.columns) == SCORE_COLUMNS
    assert sorted(scores["image_id"]) == sorted(manifest.loc[manifest["status"] == "ingested", "image_id"])
    assert set(scores["status"]) <= {"scored", "no_component", "failed"}
    assert (scores["status"] == "scored").sum() >= 1
    assert set(scores["detector_version"]) == {alias_version(settings, "detector", CHAMPION)}
    assert set(scores["segmenter_version"]) == {alias_version(settings, "segmenter", CHAMPION)}
    ok = scores[scores["status"] == "scored"]
    assert ok["score"].between(0, 1).all()
    assert (ok["is_anomalous"] == (ok["raw_score"] >= ok["threshold"])).all()
    assert scored.scored_this_run == len(scores)


def test_heatmaps_are_full_resolution_float16_and_zero_outside_the_box(
    workspace: Workspace, scored: ScoringResult
) -> None:
    settings = load_settings(workspace.home)
    store = FrameStore(settings.store_path)
    scores = read_scores(settings.results_dir(SHIFT))
    peaks = []
    for row in scores.itertuples(index=False):
        image = store.image(SHIFT, row.image_id)
        heatmap = store.heatmap(SHIFT, row.image_id)
        assert heatmap.shape == image.shape[:2]
        assert heatmap.dtype == np.float16
        assert heatmap.chunks == image.chunks[:2]
        values = heatmap[...].astype(np.float32)
        if row.status != "scored":
            assert not values.any()
            continue
        y0, x0, y1, x1 = int(row.y0), int(row.x0), int(row.y1), int(row.x1)
        assert 0 <= y0 < y1 <= image.shape[0] and 0 <= x0 < x1 <= image.shape[1]
        outside = values.copy()
        outside[y0:y1, x0:x1] = 0
        assert not outside.any()
        inside = values[y0:y1, x0:x1]
        assert inside.min() >= 0 and inside.max() <= 1
        peaks.append(inside.max())
    assert max(peaks) > 0, "every scored heatmap is empty"


def test_mlflow_run_has_params_metrics_and_artifacts(workspace: Workspace, scored: ScoringResult) -> None:
    settings = load_settings(workspace.home)
    client = MlflowClient(settings.tracking_uri)
    run = client.get_run(scored.mlflow_run_id)
    experiment = client.get_experiment(run.info.experiment_id)
    assert experiment.name == "nightly-scoring"
    assert run.data.params["shift_id"] == SHIFT
    assert run.data.params["detector_version"] == scored.detector_version
    for key in ("images", "flagged", "flag_rate", "score_p50", "score_p95", "score_p99", "images_per_second"):
        assert key in run.data.metrics, key
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert "score_histogram.png" in artifacts and "top_overlays" in artifacts


def test_report_lists_every_flagged_frame(workspace: Workspace, scored: ScoringResult) -> None:
    report = Path(scored.report)
    text = report.read_text()
    scores = read_scores(load_settings(workspace.home).results_dir(SHIFT))
    flagged = scores[(scores["status"] == "scored") & scores["is_anomalous"].astype(bool)]
    assert text.count("class='flagged'") == len(flagged)
    assert "detector weights" in text and "random" in text  # where the champion's teacher weights came from
    for image_id in flagged["image_id"]:
        assert f"data-image-id='{image_id}'" in text
        assert (report.parent / "overlays" / f"{image_id}.jpg").is_file()


def test_report_renders_in_headless_chromium(workspace: Workspace, scored: ScoringResult, tmp_path: Path) -> None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("no Chromium installed (Debian package 'chromium'; .ci/run installs it): report not rendered")
    report = Path(scored.report)
    command = [
        chromium,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--no-first-run",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--allow-file-access-from-files",
        "--run-all-compositor-stages-before-draw",
        "--virtual-time-budget=3000",
        "--dump-dom",
        report.as_uri(),
    ]
    dom = subprocess.run(command, capture_output=True, text=True, timeout=120, check=True).stdout
    scores = read_scores(load_settings(workspace.home).results_dir(SHIFT))
    flagged = scores[(scores["status"] == "scored") & scores["is_anomalous"].astype(bool)]
    assert f"<b>{len(flagged)}</b>flagged" in dom.replace(" ", "")
    assert dom.count('class="flagged"') == len(flagged)
    screenshot = tmp_path / "report.png"
    subprocess.run(
        [*command[:-2], f"--screenshot={screenshot}", "--window-size=1200,900", report.as_uri()],
        capture_output=True,
        timeout=120,
        check=True,
    )
    pixels = np.asarray(Image.open(screenshot).convert("L"))
    assert pixels.std() > 5, "the rendered report is blank"


def test_rerun_scores_only_unscored_frames_unless_rescore(workspace: Workspace) -> None:
    ingest_copy(workspace, "rerun")
    first = _score(workspace, "rerun", batch_size=4)
    again = _score(workspace, "rerun", batch_size=4)
    assert first.scored_this_run == first.frames and again.scored_this_run == 0
    forced = _score(workspace, "rerun", batch_size=4, rescore=True)
    assert forced.scored_this_run == first.frames


def test_bad_frames_get_a_status_and_do_not_stop_the_others(workspace: Workspace) -> None:
    ingest_copy(workspace, "bad", extra={"empty_belt.png": render_empty_belt((384, 512), (5, 0))})
    settings = load_settings(workspace.home)
    manifest = read_manifest(settings.results_dir("bad")).set_index("source_path")
    broken = manifest.loc["frame_00001.png", "image_id"]
    chunk_dir = settings.store_path / "shifts" / "bad" / "images" / broken / "c"
    for chunk in chunk_dir.rglob("*"):
        if chunk.is_file():
            chunk.write_bytes(b"garbage")
    blanked = manifest.loc["frame_00002.png", "image_id"]  # a lost chunk reads as zeros unless checked
    _remove_chunks(settings.store_path / "shifts" / "bad" / "images" / blanked)
    summary = _score(workspace, "bad", batch_size=4)
    scores = read_scores(settings.results_dir("bad")).set_index("image_id")
    assert scores.loc[broken, "status"] == "failed"
    assert "cannot read frame" in scores.loc[broken, "reason"]
    assert scores.loc[blanked, "status"] == "failed" and np.isnan(scores.loc[blanked, "score"])
    assert "checksum" in scores.loc[blanked, "reason"] and "defectflow verify" in scores.loc[blanked, "reason"]
    others = scores.drop(index=[broken, blanked])
    assert len(others) == 7 and set(others["status"]) <= {"scored", "no_component"}
    assert summary.scored >= 1 and summary.failed == 2


def _remove_chunks(array_dir: Path) -> None:
    chunks = [path for path in (array_dir / "c").rglob("*") if path.is_file()]
    assert chunks, array_dir
    for chunk in chunks:
        chunk.unlink()


def test_verify_finds_damaged_frames_and_heatmaps_and_the_named_commands_repair_them(workspace: Workspace) -> None:
    source = ingest_copy(workspace, "verify", frames=3)
    settings = load_settings(workspace.home)
    _score(workspace, "verify")
    verify = ["verify", "--shift", "verify", "--home", str(workspace.home), "--dask-address", shared_cluster()]
    assert CliRunner().invoke(app, verify).exit_code == 0
    scores = read_scores(settings.results_dir("verify"))
    frame, heatmap = sorted(scores.loc[scores["status"] == "scored", "image_id"])[:2]
    arrays = settings.store_path / "shifts" / "verify"
    original = FrameStore(settings.store_path).read_image("verify", frame)
    _remove_chunks(arrays / "images" / frame)
    _remove_chunks(arrays / "heatmaps" / heatmap)

    result = CliRunner().invoke(app, verify)
    output = result.output.replace("\n", " ")
    assert result.exit_code == 1, output
    assert f"damaged frame {frame}" in output and f"damaged heatmap {heatmap}" in output
    assert f"defectflow ingest {source} --shift verify" in output and "defectflow score --shift verify" in output
    manifest = read_manifest(settings.results_dir("verify")).set_index("image_id")
    assert manifest.loc[frame, "status"] == "damaged"
    assert read_scores(settings.results_dir("verify")).set_index("image_id").loc[heatmap, "status"] == "failed"

    ingest_shift.with_options(task_runner=runner(workspace.home))(
        source=str(source), shift_id="verify", home=str(workspace.home)
    )
    _score(workspace, "verify")
    assert CliRunner().invoke(app, verify).exit_code == 0
    np.testing.assert_array_equal(FrameStore(settings.store_path).read_image("verify", frame), original)
    assert read_scores(settings.results_dir("verify")).set_index("image_id").loc[heatmap, "status"] == "scored"


def _segmenter_that_finds_nothing(workspace: Workspace, directory: Path) -> Path:
    """The champion segmenter's package with its last layer set to answer "background" for every pixel.

    Whether a small test-sized segmenter finds nothing on a given frame depends on its training; a model whose
    answer is known makes the ``no_component`` path of the pipeline testable on its own.
    """
    settings = load_settings(workspace.home)
    champion = settings.models_dir / "registry" / "segmenter" / alias_version(settings, "segmenter", CHAMPION)
    model, package = load_model_package(champion, {SEGMENTER_KIND: segmenter_builder}, SEGMENTER_KIND)
    weights = model.state_dict()
    weights["decoder.head.1.weight"].zero_()
    weights["decoder.head.1.bias"].copy_(torch.tensor([10.0, -10.0]))
    model.load_state_dict(weights)
    return save_model_package(directory, package.kind, package.config, model, package.extra)


def test_frames_without_a_component_are_reported_not_scored(workspace: Workspace, tmp_path: Path) -> None:
    ingest_copy(workspace, "empty")
    segmenter = _segmenter_that_finds_nothing(workspace, tmp_path / "background-only")
    summary = _score(workspace, "empty", segmenter=str(segmenter))
    settings = load_settings(workspace.home)
    scores = read_scores(settings.results_dir("empty"))
    assert (scores["status"] == "no_component").all() and len(scores) == 8
    assert scores["reason"].str.contains("holds no pixel of class 1").all()
    assert scores["score"].isna().all() and not scores["is_anomalous"].any()
    assert summary.no_component == 8 and summary.scored == 0
    heatmap = zarr.open_array(settings.store_path / "shifts" / "empty" / "heatmaps" / scores["image_id"].iloc[0])
    assert heatmap.attrs["status"] == "no_component"


def test_one_stage_scores_whole_frames(workspace: Workspace) -> None:
    ingest_copy(workspace, "onestage")
    summary = _score(workspace, "onestage", one_stage=True)
    scores = read_scores(load_settings(workspace.home).results_dir("onestage"))
    assert (scores["status"] == "scored").all()
    assert (scores[["y0", "x0"]] == 0).all().all()
    assert (scores["y1"] == 384).all() and (scores["x1"] == 512).all()
    assert scores["segmenter_version"].isna().all() and summary.segmenter_version is None


def test_a_killed_worker_loses_no_finished_work(workspace: Workspace) -> None:
    ingest_copy(workspace, "killed")
    killed: list[int] = []

    def kill_one_worker() -> None:
        parts = load_settings(workspace.home).results_dir("killed") / PARTS_DIR
        deadline = time.time() + 120
        while time.time() < deadline and not (parts.is_dir() and any(parts.iterdir())):
            time.sleep(0.05)
        for child in psutil.Process().children(recursive=True):
            if "multiprocessing" in " ".join(child.cmdline()) and child.pid not in killed:
                child.kill()
                killed.append(child.pid)
                return

    killer = threading.Thread(target=kill_one_worker)
    killer.start()
    try:
        summary = _score(workspace, "killed", own_cluster=True, batch_size=1)  # kills one of its workers
    except Exception:  # the run itself may fail with the worker; the re-run must complete the shift
        summary = None
    killer.join()
    assert killed, "no worker process was killed"
    if summary is None or summary.failed:
        summary = _score(workspace, "killed", batch_size=1)
    scores = read_scores(load_settings(workspace.home).results_dir("killed"))
    assert len(scores) == 8 and not (scores["status"] == "failed").any()
    assert summary.failed == 0


def test_models_load_once_per_process(workspace: Workspace) -> None:
    settings = load_settings(workspace.home)
    refs = champion_refs(workspace.home)
    ids = read_manifest(settings.results_dir(SHIFT))["image_id"].tolist()[:2]
    model_cache._cache.clear()
    results_dir = str(workspace.home / "scratch-results")
    for _ in range(3):
        score_frames.fn(str(settings.store_path), results_dir, SHIFT, ids, refs[0], refs[1])
    assert model_cache.loaded_count() == 2


def test_missing_champion_is_a_clear_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["score", "--shift", "x", "--home", str(tmp_path / "empty")])
    assert result.exit_code == 2
    assert "defectflow train segmenter" in result.output.replace("\n", " ")


def test_zarr_heatmap_attributes_name_the_detector(workspace: Workspace, scored: ScoringResult) -> None:
    settings = load_settings(workspace.home)
    scores = read_scores(settings.results_dir(SHIFT))
    first = scores[scores["status"] == "scored"].iloc[0]
    attributes = zarr.open_array(settings.store_path / "shifts" / SHIFT / "heatmaps" / first["image_id"]).attrs
    assert attributes["detector_version"] == scored.detector_version
    assert isinstance(pd.Timestamp(first["scored_at"]), pd.Timestamp)


def test_a_scoring_of_a_busy_shift_refuses_with_exit_75(workspace: Workspace) -> None:
    from tests.pipeline import shift_held_by_another_process

    ingest_copy(workspace, "busy", frames=1)
    arguments = ["score", "--shift", "busy", "--home", str(workspace.home), "--workers", "1"]
    with shift_held_by_another_process(workspace.home, "busy"):
        result = CliRunner().invoke(app, arguments)
    assert result.exit_code == 75, result.output
    assert "shift busy is busy: 'ingest by the test'" in result.output.replace("\n", " ")
    assert read_scores(load_settings(workspace.home).results_dir("busy")).empty


def test_the_demo_summary_reads_a_scored_shift(workspace: Workspace, scored: ScoringResult, capsys) -> None:
    from flows.demo import _summary

    _summary(workspace.home, workspace.shift_dir, score_seconds=1.0, total_seconds=60.0, shift=SHIFT)
    printed = capsys.readouterr().out
    assert "image AUROC vs synthetic labels" in printed and "nan" not in printed  # both labels among the frames
