"""Verdicts flow back: export, recalibration into a challenger, the promotion gate on reviewed frames, rollback.

Real command lines against a real MLflow registry, zarr store and Prefect API. The tests work on a home of their
own that holds the session's registry and its scored shift (``tests/test_scoring.py``): promoting and rolling
back there cannot change which detector the other tests' shifts are scored with.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient
from typer.testing import CliRunner

from flows.cli import app
from flows.promotion import REVIEWED_METRIC, gate_rule, reviewed_evaluation
from models.detector.calibration import Calibration
from models.detector.package import read_calibration
from models.detector.recalibration import NotEnoughReviews, recalibrate_on_reviews
from models.metrics.anomaly import f1_max
from storage.registry import CHALLENGER, CHAMPION, DIGEST_TAG, PREVIOUS, alias_version, resolve_model, version_tags
from storage.settings import load_settings
from storage.tables import ScoreRecord, ScoreStatus, read_scores, write_scores
from storage.verdicts import VerdictStore
from tests.pipeline import SHIFT, Workspace

WEIGHTS_DIGEST = f"{DIGEST_TAG}weights.pt"


def _own_home(workspace: Workspace, target: Path) -> Path:
    """The session's registry, its scored shift's results and arrays, and an empty verdict log, in ``target``.

    The registry's artifacts stay where they are (runs point at them), so nothing large is copied.
    """
    settings = load_settings(workspace.home)
    shutil.copy2(settings.home / "mlflow.db", target / "mlflow.db")
    shutil.copytree(settings.results_dir(SHIFT), target / "results" / SHIFT)
    for part in ("zarr.json", "shifts/zarr.json"):
        (target / "store.zarr" / part).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(settings.store_path / part, target / "store.zarr" / part)
    shutil.copytree(settings.store_path / "shifts" / SHIFT, target / "store.zarr" / "shifts" / SHIFT)
    return target


@pytest.fixture(scope="module")
def home(workspace: Workspace, scored: dict, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _own_home(workspace, tmp_path_factory.mktemp("verdicts-home"))


def _cli(*arguments: str):
    return CliRunner().invoke(app, list(arguments))


def _review_night(home: Path) -> float:
    """Verdicts on the scored shift whose F1 threshold is not the champion's: the two highest raw scores are
    defects, the next two false alarms, the fifth unsure; returns that threshold."""
    scores = read_scores(load_settings(home).results_dir(SHIFT))
    ranked = scores[scores["status"] == "scored"].sort_values("raw_score", ascending=False)
    ids = list(ranked["image_id"])
    store = VerdictStore(load_settings(home).verdicts_path)
    store.record(SHIFT, ids[0], "false_alarm", "ana")  # superseded by the next verdict on the same frame
    for image_id, verdict in [(ids[0], "defect"), (ids[1], "defect"), (ids[2], "false_alarm"), (ids[3], "false_alarm")]:
        store.record(SHIFT, image_id, verdict, "ben")
    store.record(SHIFT, ids[4], "unsure", "ana")
    labels = np.array([True, True, False, False])
    return f1_max(labels, ranked["raw_score"].to_numpy()[:4]).threshold


def _scores_only_shift(home: Path, shift: str, versions: dict[str, str]) -> None:
    """A shift known by its scores table alone (image id -> detector version): verdicts on it touch no other test."""
    settings = load_settings(home)
    settings.results_dir(shift).mkdir(parents=True)
    rows = [
        ScoreRecord(image_id, ScoreStatus.SCORED, detector_version=version, raw_score=float(index)).row()
        for index, (image_id, version) in enumerate(versions.items())
    ]
    write_scores(settings.results_dir(shift), pd.DataFrame(rows))


def test_export_writes_the_whole_history_with_scores(home: Path, tmp_path: Path) -> None:
    _scores_only_shift(home, "exported", {"a.png": "1"})
    store = VerdictStore(load_settings(home).verdicts_path)
    store.record("exported", "a.png", "unsure", "ana")
    store.record("exported", "a.png", "defect", "ben", defect_type="dent", note="top, 5 mm")
    export = ["verdicts", "export", "--shift", "exported", "--home", str(home), "--out"]
    csv, parquet = _cli(*export, str(tmp_path / "v.csv")), _cli(*export, str(tmp_path / "v.parquet"))
    assert csv.exit_code == 0 and parquet.exit_code == 0, csv.output + parquet.output
    for table in (pd.read_csv(tmp_path / "v.csv"), pd.read_parquet(tmp_path / "v.parquet")):
        assert list(table["verdict"]) == ["unsure", "defect"] and list(table["reviewer"]) == ["ana", "ben"]
        assert table["note"].iloc[-1] == "top, 5 mm" and table["defect_type"].iloc[-1] == "dent"
        assert list(table["raw_score"]) == [0.0, 0.0] and list(table["score_status"]) == ["scored", "scored"]
    on_stdout = _cli(*export[:-1])
    assert on_stdout.exit_code == 0 and on_stdout.output.startswith("id,shift_id,image_id,verdict"), on_stdout.output
    assert len(on_stdout.output.strip().splitlines()) == 3
    unknown = _cli("verdicts", "export", "--shift", "no-such-shift", "--home", str(home))
    assert unknown.exit_code == 2 and "no-such-shift" in unknown.output and "ingested shifts: night-1" in unknown.output


def test_recalibrate_says_what_is_missing(home: Path) -> None:
    """No verdicts, one class only, frames another version scored, an unknown shift: exit 2 with the counts."""
    settings = load_settings(home)
    challenger = alias_version(settings, "detector", CHALLENGER)
    _scores_only_shift(home, "morning", {"a.png": alias_version(settings, "detector", CHAMPION), "b.png": "999"})
    recalibrate = ["recalibrate", "--model", "detector", "--shifts", "morning", "--home", str(home)]
    nothing = _cli(*recalibrate)
    assert nothing.exit_code == 2 and "found 0 defect and 0 false alarm" in nothing.output, nothing.output
    VerdictStore(settings.verdicts_path).record("morning", "a.png", "defect", "ana")
    VerdictStore(settings.verdicts_path).record("morning", "b.png", "false_alarm", "ana")
    one_class = _cli(*recalibrate)
    assert one_class.exit_code == 2 and "found 1 defect and 0 false alarm" in one_class.output, one_class.output
    assert "1 reviewed frame(s) skipped because another detector version scored them" in one_class.output
    unknown = _cli("recalibrate", "--shifts", "no-such-shift", "--home", str(home))
    assert unknown.exit_code == 2 and "no-such-shift" in unknown.output, unknown.output
    assert "Traceback" not in nothing.output + one_class.output + unknown.output
    assert alias_version(settings, "detector", CHALLENGER) == challenger, "a refused recalibration registered a model"


def test_recalibrated_challenger_has_the_champions_weights_and_goes_through_promotion_and_rollback(
    home: Path, workspace: Workspace
) -> None:
    settings = load_settings(home)
    champion = alias_version(settings, "detector", CHAMPION)
    threshold = _review_night(home)
    before = read_calibration(resolve_model(settings, f"models:/detector/{champion}", "detector").local_dir)
    assert threshold != pytest.approx(before.image_threshold)

    result = _cli("recalibrate", "--model", "detector", "--shifts", SHIFT, "--home", str(home))
    assert result.exit_code == 0, result.output
    version = alias_version(settings, "detector", CHALLENGER)
    assert version not in (None, champion)
    tags, source_tags = version_tags(settings, "detector", version), version_tags(settings, "detector", champion)
    assert tags[WEIGHTS_DIGEST] == source_tags[WEIGHTS_DIGEST]
    assert tags["recalibrated_from"] == champion and tags["verdicts/reviewed_frames"] == "4"
    assert tags["verdicts/defect"] == "2" and tags["verdicts/false_alarm"] == "2"
    calibration = read_calibration(resolve_model(settings, f"models:/detector/{version}", "detector").local_dir)
    assert calibration.method == "f1-reviewed"
    assert calibration.image_threshold == pytest.approx(threshold)
    assert calibration.pixel_threshold == before.pixel_threshold
    assert calibration.details["previous_threshold"] == pytest.approx(before.image_threshold)
    assert calibration.details["image_f1"] == pytest.approx(1.0)

    promoted = _cli("promote", "--model", "detector", "--eval-data", str(workspace.mvtec), "--home", str(home))
    assert promoted.exit_code == 0, promoted.output
    assert "promoted" in promoted.output and "reviewed_image_auroc" in promoted.output, promoted.output
    assert "reviewed set: 2 defect, 2 false alarm" in promoted.output, promoted.output
    assert alias_version(settings, "detector", CHAMPION) == version
    assert alias_version(settings, "detector", PREVIOUS) == champion
    client = MlflowClient(settings.tracking_uri)
    experiment = client.get_experiment_by_name("promotion").experiment_id
    run = client.search_runs([experiment], f"attributes.run_name = 'promote-detector-v{version}'")[0]
    assert {"challenger_reviewed_image_auroc", "champion_reviewed_image_auroc"} <= set(run.data.metrics)
    assert "reviewed_image_auroc" in run.data.params["guard_metrics"]
    assert run.data.params["reviewed_defect"] == "2" and run.data.tags["reviewed_set"].startswith("reviewed set")

    rolled_back = _cli("rollback", "--model", "detector", "--home", str(home))
    assert rolled_back.exit_code == 0, rolled_back.output
    assert alias_version(settings, "detector", CHAMPION) == champion


def test_the_f1_fit_moves_only_the_image_threshold_and_needs_both_classes() -> None:
    before = Calibration(1.0, 0.8, 0.5, 2.0, 0.0, 3.0, "normal-quantile")
    scores, defect = np.array([0.4, 1.2, 1.5, 2.5]), np.array([False, False, True, True])
    after = recalibrate_on_reviews(before, scores, defect, {"shifts": "night-1"})
    assert after.image_threshold == f1_max(defect, scores).threshold == 1.5
    assert (after.pixel_threshold, after.pixel_min, after.pixel_max) == (0.8, 0.0, 3.0)
    assert (after.image_min, after.image_max) == (0.4, 2.5)  # no reviewed score is clipped by the normalisation
    assert after.method == "f1-reviewed" and after.details["previous_threshold"] == 1.0
    assert after.details["shifts"] == "night-1" and after.details["n_defect"] == 2
    with pytest.raises(NotEnoughReviews, match="found 2 defect and 0 false alarm"):
        recalibrate_on_reviews(before, scores[2:], defect[2:])


def test_with_too_few_reviewed_frames_promotion_uses_the_fixed_set_only(tmp_path: Path) -> None:
    settings = load_settings(tmp_path / "home").ensure()
    VerdictStore(settings.verdicts_path).record("night-1", "a.png", "defect", "ana")
    VerdictStore(settings.verdicts_path).record("night-1", "b.png", "unsure", "ana")
    reviewed = reviewed_evaluation(settings, ["1", "2"])
    assert reviewed["image_auroc"] == {} and (reviewed["defect"], reviewed["false_alarm"]) == (1, 0)
    assert "too few reviewed frames (1 defect, 0 false alarm" in reviewed["note"]
    assert "judged on the fixed set only" in reviewed["note"]
    assert REVIEWED_METRIC not in gate_rule(settings, "detector").guards
    assert REVIEWED_METRIC in gate_rule(settings, "detector", reviewed=True).guards
