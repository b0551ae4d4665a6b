"""The report's overlays: drawn by the scoring batches for flagged frames, the rest by the flow's finish, within the
report's limit, and the same pictures either way."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from flows import scoring
from flows.overlay_allowance import OverlayAllowance
from models.packaging import DESCRIPTION_FILE
from storage.settings import load_settings
from storage.tables import read_manifest, read_scores
from tasks.model_ref import ModelRef
from tasks.render_overlays import render_overlays
from tasks.score_frames import score_frames
from tests.pipeline import Workspace, champion_refs, ingest_copy, score_shift


def test_allowance_never_gives_more_than_the_limit_and_takes_back_what_was_unused() -> None:
    allowance = OverlayAllowance(5)
    assert [allowance.give(key, 2) for key in "abcd"] == [2, 2, 1, 0]
    allowance.settle("a", 0)  # drew nothing: both come back
    allowance.settle("b", 2)
    assert allowance.give("e", 4) == 2
    allowance.settle("c", 1)
    allowance.settle("d", 0)
    allowance.settle("e", 0)  # a failed batch gives everything back
    assert allowance.left == 2  # "b" drew 2 and "c" drew 1 of the 5
    assert allowance.give("f", 9) == 2


def _detector_that_flags_everything(workspace: Workspace, directory: Path) -> ModelRef:
    """The champion detector's package with its image threshold below any score, so every scored frame is flagged.

    Which frames a small test-sized detector flags depends on its training; this makes "more flagged frames than
    the report shows" happen for sure.
    """
    champion = champion_refs(workspace.home)[1]
    shutil.copytree(champion.local_dir, directory)
    description = directory / DESCRIPTION_FILE
    values = json.loads(description.read_text())
    calibration = values["extra"]["calibration"]
    calibration["image_threshold"] = min(0.0, calibration["image_min"]) - 1.0  # image scores are distances, >= 0
    description.write_text(json.dumps(values))
    return ModelRef("detector", str(directory), str(directory))


def test_overlays_of_more_flagged_frames_than_the_limit(
    workspace: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ingest_copy(workspace, "overlays")
    detector = _detector_that_flags_everything(workspace, tmp_path / "flags-everything")
    monkeypatch.setattr(scoring, "FLAGGED_OVERLAY_LIMIT", 3)
    monkeypatch.setattr(scoring, "TOP_OVERLAYS", 1)
    summary = score_shift(workspace, "overlays", detector=detector.local_dir, batch_size=2)
    results = load_settings(workspace.home).results_dir("overlays")
    scores = read_scores(results).dropna(subset=["score"]).sort_values("score", ascending=False)
    assert summary.flagged == summary.scored >= 5  # every frame with a component is flagged
    assert summary.phase_seconds["overlay"] > 0, "no batch drew an overlay"
    # the highest score and the three highest flagged frames (the highest among them); the batches drew three
    # overlays, those of the first frames they flagged, and the finish drew what was missing and removed the rest
    shown = set(scores.head(3)["image_id"])
    assert {path.stem for path in (results / "overlays").glob("*.jpg")} == shown
    report = Path(summary.report).read_text()
    assert report.count("<img src='overlays/") == 3 and report.count("(no overlay)") == summary.flagged - 3
    for image_id in shown:
        assert f"<img src='overlays/{image_id}.jpg'" in report


def test_an_overlay_drawn_in_the_batch_is_the_one_drawn_from_the_store(workspace: Workspace, tmp_path: Path) -> None:
    ingest_copy(workspace, "overlay-same", frames=3)
    settings = load_settings(workspace.home)
    detector = _detector_that_flags_everything(workspace, tmp_path / "flags-everything")
    segmenter = champion_refs(workspace.home)[0]
    ids = sorted(read_manifest(settings.results_dir("overlay-same"))["image_id"])
    store = str(settings.store_path)
    in_batch = tmp_path / "in-batch"
    batch = score_frames.fn(
        store,
        str(tmp_path / "parts"),
        "overlay-same",
        ids,
        segmenter,
        detector,
        overlay_dir=str(in_batch),
        max_overlays=2,
    )
    assert [Path(path).parent for path in batch.overlays] == [in_batch, in_batch]  # two allowed, three flagged
    records = {row["image_id"]: row for row in batch.rows}
    for path in map(Path, batch.overlays):
        from_store = render_overlays.fn(store, "overlay-same", [records[path.stem]], str(tmp_path / "from-store"))
        assert Path(from_store[0]).read_bytes() == path.read_bytes()


def test_an_overlay_that_cannot_be_written_costs_the_picture_not_the_batch(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from tasks.score_batch import FlaggedOverlays

    blocked = tmp_path / "overlays"
    blocked.write_text("a file where the overlay folder should be")
    overlays = FlaggedOverlays(blocked, limit=2)
    frame, heatmap = np.zeros((64, 48), np.uint8), np.full((64, 48), 0.7, np.float16)
    overlays.draw(frame, heatmap, (8, 8, 40, 40), "frame-1")
    assert overlays.written == []
    assert "overlay of frame-1 not drawn" in caplog.text and "finish draws it" in caplog.text
    good = FlaggedOverlays(tmp_path / "good", limit=1)
    for image_id in ("frame-1", "frame-2"):
        good.draw(frame, heatmap, (8, 8, 40, 40), image_id)
    assert [Path(path).name for path in good.written] == ["frame-1.jpg"]  # the limit


def test_overlays_that_cannot_be_drawn_cost_the_pictures_not_the_shift(workspace: Workspace, tmp_path: Path) -> None:
    ingest_copy(workspace, "overlay-blocked", frames=3)
    results = load_settings(workspace.home).results_dir("overlay-blocked")
    (results / "overlays").write_text("a file where the overlay folder should be")
    detector = _detector_that_flags_everything(workspace, tmp_path / "flags-everything")
    summary = score_shift(workspace, "overlay-blocked", detector=detector.local_dir)
    assert summary.flagged == summary.scored >= 1
    assert len(read_scores(results)) == 3
    report = Path(summary.report).read_text()
    assert "<img src=" not in report and report.count("(no overlay)") == summary.flagged
    (results / "overlays").unlink()  # the cause fixed: the same command draws them and scores nothing again
    again = score_shift(workspace, "overlay-blocked", detector=detector.local_dir)
    assert again.scored_this_run == 0
    assert Path(again.report).read_text().count("<img src='overlays/") == again.flagged
