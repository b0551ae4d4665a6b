"""The retrain flow on the session workspace: training set from confidently normal frames corrected by operator
verdicts, lineage in the registry."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pandas as pd
import pytest

from flows.results import RetrainResult
from flows.retraining import confidently_normal, retrain, select_shifts
from flows.scoring import nightly_scoring
from flows.training import DataError
from storage.registry import CHALLENGER, alias_version, version_tags
from storage.settings import Settings, load_settings
from storage.tables import SCORE_COLUMNS, read_scores, write_scores
from storage.verdicts import VerdictStore
from tests.pipeline import Workspace, ingest_copy, runner

SHIFT_FOR_RETRAIN = "retrain-source"


def _retrain(workspace: Workspace, **kwargs) -> RetrainResult:
    return retrain.with_options(task_runner=runner(workspace.home))(
        home=str(workspace.home),
        eval_data=str(workspace.mvtec),
        backbone="resnet18",
        image_size=128,
        epochs=1,
        max_minutes=0.3,
        teacher_weights="none",
        **kwargs,
    )


def _scored_copy(workspace: Workspace, shift: str, frames: int | None = None) -> None:
    ingest_copy(workspace, shift, frames=frames)
    nightly_scoring.with_options(task_runner=runner(workspace.home))(shift_id=shift, home=str(workspace.home))


def _review(settings: Settings, scores: pd.DataFrame) -> tuple[str, str]:
    """A missed defect (a confidently normal frame reviewed ``defect``) and a false alarm (a flagged frame reviewed
    ``false_alarm``), in the workspace's verdict log; returns their image ids.

    The small detector flags few or none of these frames, so the false alarm's row is marked flagged first, as a
    stricter detector would have scored it; the table is rewritten the way scoring writes it.
    """
    scored = sorted(scores.loc[scores["status"] == "scored", "image_id"])
    defect, false_alarm = scored[0], scored[-1]
    rows = scores.set_index("image_id")
    rows.loc[defect, ["score", "is_anomalous"]] = [0.1, False]
    rows.loc[false_alarm, ["score", "is_anomalous"]] = [0.9, True]
    write_scores(settings.results_dir(SHIFT_FOR_RETRAIN), rows.reset_index())
    verdicts = VerdictStore(settings.verdicts_path)
    verdicts.record(SHIFT_FOR_RETRAIN, defect, "false_alarm", "ana")  # superseded: the latest verdict counts
    verdicts.record(SHIFT_FOR_RETRAIN, defect, "defect", "ben", defect_type="scratch")
    verdicts.record(SHIFT_FOR_RETRAIN, false_alarm, "false alarm", "ana")
    return defect, false_alarm


def test_retrain_trains_on_confidently_normal_frames_and_records_lineage(workspace: Workspace, tmp_path: Path) -> None:
    settings = load_settings(workspace.home)
    _scored_copy(workspace, SHIFT_FOR_RETRAIN)
    defect, false_alarm = _review(settings, read_scores(settings.results_dir(SHIFT_FOR_RETRAIN)))
    scores = read_scores(settings.results_dir(SHIFT_FOR_RETRAIN))
    curated = workspace.mvtec / "train" / "good"
    result = _retrain(workspace, shifts=[SHIFT_FOR_RETRAIN], good_dir=str(curated))

    lineage = result.lineage
    names = Path(lineage["dataset_dir"], "training_list.txt").read_text().split()
    prefix = f"{SHIFT_FOR_RETRAIN}__"
    from_shift = {name.split("__", 1)[1].removesuffix(".png") for name in names if name.startswith(prefix)}
    assert defect in confidently_normal(scores) and defect not in from_shift, "a frame reviewed 'defect' was trained on"
    assert false_alarm in from_shift, "a frame reviewed 'false_alarm' was not added to the training set"
    assert from_shift == (set(confidently_normal(scores)) - {defect}) | {false_alarm}
    not_normal = scores.loc[(scores["status"] != "scored") | scores["is_anomalous"].astype(bool), "image_id"]
    assert not from_shift & (set(not_normal) - {false_alarm}), "a flagged or failed frame went into the training set"
    assert lineage["verdicts/excluded_defect"] == "1" and lineage["verdicts/added_false_alarm"] == "1"
    assert sum(name.startswith("curated__") for name in names) == len(list(curated.glob("*.png")))
    assert int(lineage["frame_count"]) == len(names) == len(list(Path(lineage["dataset_dir"], "train/good").iterdir()))

    version = result.detector.version
    assert alias_version(settings, "detector", CHALLENGER) == version
    tags = version_tags(settings, "detector", version)
    assert tags["training_list_sha256"] == lineage["training_list_sha256"]
    assert tags["frame_count"] == lineage["frame_count"]
    assert tags["shifts"] == SHIFT_FOR_RETRAIN
    assert tags["verdicts/excluded_defect"] == "1" and tags["verdicts/added_false_alarm"] == "1"
    assert tags["git_commit"]


def test_retrain_refuses_a_shift_that_was_never_scored(workspace: Workspace) -> None:
    with pytest.raises(DataError, match="defectflow score --shift never-scored"):
        _retrain(workspace, shifts=["never-scored"])


def test_retrain_without_enough_images_says_what_to_do(workspace: Workspace, tmp_path: Path) -> None:
    _scored_copy(workspace, "two-frames", frames=2)
    empty = tmp_path / "empty-curated-folder"
    empty.mkdir()
    with pytest.raises(DataError, match=r"only [0-2] training images .* --good-dir"):
        _retrain(workspace, shifts=["two-frames"], good_dir=str(empty))


def test_without_named_shifts_the_recently_scored_ones_are_used(tmp_path: Path) -> None:
    settings = load_settings(tmp_path / "home").ensure()
    for shift in ("last-week", "last-month", "ingested-only"):
        settings.results_dir(shift).mkdir(parents=True)
    write_scores(settings.results_dir("last-week"), pd.DataFrame(columns=SCORE_COLUMNS))
    old = write_scores(settings.results_dir("last-month"), pd.DataFrame(columns=SCORE_COLUMNS))
    month_ago = time.time() - 30 * 86400
    os.utime(old, (month_ago, month_ago))
    assert select_shifts(settings, None, since_days=7) == ["last-week"]
    assert select_shifts(settings, None, since_days=60) == ["last-month", "last-week"]
