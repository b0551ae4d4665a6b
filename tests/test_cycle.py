"""The model lifecycle, unattended: a first champion, a refused bad challenger, a promoted better one, a rollback,
and the next scoring run on the restored champion (issue #6).

The sequence uses the segmenter: its primary metric (mIoU) orders a one-epoch model, a model trained on inverted
masks and a properly trained model reliably even at test sizes (a tiny detector's image AUROC does not). Everything
is real (Prefect flow runs, MLflow SQLite registry, zarr store, Dask LocalCluster) in a temporary workspace; only
the sizes are small.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from mlflow import MlflowClient
from PIL import Image
from typer.testing import CliRunner

from flows.cli import app
from flows.ingest import ingest_shift
from flows.promotion import promote
from flows.scoring import nightly_scoring
from flows.training import train_segmenter_flow
from storage.registry import CHALLENGER, CHAMPION, PREVIOUS, alias_version, list_versions, version_tags
from storage.settings import load_settings
from storage.tables import read_scores
from storage.tracking import EXPERIMENT_PROMOTION
from synth.dataset import generate_dataset
from synth.shift import generate_shift
from tests.pipeline import runner, train_small_detector

SHIFT = "after-rollback"


def _inverted_copy(segmentation: Path, target: Path) -> Path:
    """The segmentation set with every mask inverted (component <-> background): a labelling accident."""
    shutil.copytree(segmentation, target)
    for path in sorted((target / "masks").glob("*.png")):
        mask = np.asarray(Image.open(path))
        Image.fromarray((mask == 0).astype(np.uint8)).save(path)
    return target


def _train_segmenter(data: Path, home: Path, epochs: int, max_minutes: float) -> str:
    result = train_segmenter_flow(
        data=str(data),
        home=str(home),
        backbone="resnet18",
        image_size=128,
        epochs=epochs,
        batch_size=4,
        seed=0,
        max_minutes=max_minutes,
        encoder_weights="none",
    )
    return result.version


def _aliases(home: Path, model: str) -> dict[str, str | None]:
    settings = load_settings(home)
    return {alias: alias_version(settings, model, alias) for alias in (CHAMPION, PREVIOUS, CHALLENGER)}


@pytest.fixture(scope="module")
def cycle(tmp_path_factory: pytest.TempPathFactory, prefect_api: str) -> dict[str, Any]:
    """Run the whole lifecycle once; the tests below read what each step left behind."""
    root = tmp_path_factory.mktemp("cycle")
    home, data = root / "home", root / "data"
    generate_dataset(data, train_good=24, test_good=6, test_defect_per_type=2, seg_images=16, size=(192, 256), seed=0)
    segmentation = data / "segmentation"
    story: dict[str, Any] = {"home": home, "timings": {}}
    started = time.perf_counter()

    def lap(step: str) -> None:
        story["timings"][step] = round(time.perf_counter() - started, 1)

    with pytest.MonkeyPatch.context() as env:
        for name in ("DEFECTFLOW_FLOOR_MIOU", "DEFECTFLOW_FLOOR_IMAGE_AUROC", "DEFECTFLOW_SEG_EVAL_DATA"):
            env.delenv(name, raising=False)
        # the CLI sets Prefect's console log levels in os.environ; give them back afterwards
        for name in ("CONSOLE", "CONSOLE_FLOW_RUNS", "CONSOLE_TASK_RUNS"):
            env.setenv(f"PREFECT_LOGGING_HANDLERS_{name}_LEVEL", "WARNING")

        # 1. v1, a deliberately weak but honest segmenter (one epoch): the default floor refuses it as the first
        #    champion; a relaxed floor (half its mIoU) lets it in.
        story["v1"] = _train_segmenter(segmentation, home, epochs=1, max_minutes=0.5)
        story["v1_default_floor"] = promote(model="segmenter", home=str(home), eval_data=str(segmentation))
        env.setenv("DEFECTFLOW_FLOOR_MIOU", str(story["v1_default_floor"].challenger_metrics["miou"] / 2))
        story["v1_promotion"] = promote(model="segmenter", home=str(home), eval_data=str(segmentation))
        story["after_v1"] = _aliases(home, "segmenter")
        lap("v1")

        # 2. v2, trained on a copy whose masks are inverted: the gate refuses it.
        corrupted = _inverted_copy(segmentation, root / "segmentation-inverted")
        story["v2"] = _train_segmenter(corrupted, home, epochs=2, max_minutes=0.5)
        story["v2_promotion"] = promote(model="segmenter", home=str(home), eval_data=str(segmentation))
        story["after_v2"] = _aliases(home, "segmenter")
        lap("v2")

        # 3. v3, a proper small run: promoted; v1 becomes 'previous'.
        # Its 12 epochs, not the clock, must end it: the suite runs in two processes, and a busy machine must not
        # leave v3 too short to beat v1.
        story["v3"] = _train_segmenter(segmentation, home, epochs=12, max_minutes=5.0)
        story["v3_promotion"] = promote(model="segmenter", home=str(home), eval_data=str(segmentation))
        story["after_v3"] = _aliases(home, "segmenter")
        story["versions_after_v3"] = list_versions(load_settings(home), "segmenter")
        lap("v3")

        # A detector champion for the scoring run (first promotion: its floor is relaxed, a tiny detector is noisy).
        env.setenv("DEFECTFLOW_FLOOR_IMAGE_AUROC", "0")
        story["detector"] = train_small_detector(home, data).version
        story["detector_promotion"] = promote(model="detector", home=str(home), eval_data=str(data / "mvtec"))
        lap("detector")

        # 4. rollback from the command line restores v1.
        story["rollback_cli"] = CliRunner().invoke(app, ["rollback", "--model", "segmenter", "--home", str(home)])
        story["after_rollback"] = _aliases(home, "segmenter")
        story["versions_after_rollback"] = list_versions(load_settings(home), "segmenter")
        # the demoted v3 is still the challenger: a later promote (the weekly deployment) must not bring it back
        story["repromote_rolled_back"] = promote(model="segmenter", home=str(home), eval_data=str(segmentation))
        story["after_repromote"] = _aliases(home, "segmenter")
        lap("rollback")

        # 5. the next shift is scored by the restored champion.
        generate_shift(root / "shift", images=4, size=(384, 512), defect_rate=0.5, seed=3)
        ingest_shift.with_options(task_runner=runner(home))(
            source=str(root / "shift" / "frames"), shift_id=SHIFT, home=str(home)
        )
        story["scoring"] = nightly_scoring.with_options(task_runner=runner(home))(shift_id=SHIFT, home=str(home))
        story["scores"] = read_scores(load_settings(home).results_dir(SHIFT))
        lap("scoring")

    mious = {v: story[f"{v}_promotion"].challenger_metrics["miou"] for v in ("v1", "v2", "v3")}
    print(f"\ncycle: mIoU {mious}, seconds at the end of each step {story['timings']}")
    return story


def test_first_champion_must_clear_the_floor(cycle: dict[str, Any]) -> None:
    refused, promoted = cycle["v1_default_floor"], cycle["v1_promotion"]
    assert not refused.promoted and "floor" in refused.reason, refused
    assert refused.champion_version is None and refused.champion_metrics is None
    assert promoted.promoted, promoted
    assert cycle["after_v1"] == {CHAMPION: cycle["v1"], PREVIOUS: None, CHALLENGER: cycle["v1"]}


def test_challenger_trained_on_corrupted_masks_is_refused(cycle: dict[str, Any]) -> None:
    decision = cycle["v2_promotion"]
    assert decision.challenger_version == cycle["v2"] != cycle["v1"]
    assert not decision.promoted, decision
    assert "miou" in decision.reason and "below the champion" in decision.reason
    assert decision.challenger_metrics["miou"] < decision.champion_metrics["miou"]
    assert cycle["after_v2"] == {CHAMPION: cycle["v1"], PREVIOUS: None, CHALLENGER: cycle["v2"]}


def test_better_challenger_is_promoted_and_older_versions_stay(cycle: dict[str, Any]) -> None:
    v1, v2, v3 = cycle["v1"], cycle["v2"], cycle["v3"]
    decision = cycle["v3_promotion"]
    assert decision.promoted, decision
    assert decision.challenger_metrics["miou"] > decision.champion_metrics["miou"]
    assert (decision.champion_version, decision.previous_version) == (v3, v1)
    assert cycle["after_v3"] == {CHAMPION: v3, PREVIOUS: v1, CHALLENGER: v3}
    versions = {row["version"]: row["aliases"] for row in cycle["versions_after_v3"]}
    assert list(versions) == [v1, v2, v3]
    assert versions == {v1: [PREVIOUS], v2: [], v3: [CHALLENGER, CHAMPION]}


def test_rollback_from_the_command_line_restores_the_previous_champion(cycle: dict[str, Any]) -> None:
    v1, v2, v3 = cycle["v1"], cycle["v2"], cycle["v3"]
    result = cycle["rollback_cli"]
    assert result.exit_code == 0, result.output
    assert f"champion is v{v1} again (v{v3} demoted)" in result.output
    assert cycle["after_rollback"] == {CHAMPION: v1, PREVIOUS: None, CHALLENGER: v3}
    assert [row["version"] for row in cycle["versions_after_rollback"]] == [v1, v2, v3]
    settings = load_settings(cycle["home"])
    assert version_tags(settings, "segmenter", v3).get("rolled_back") == "true"
    assert "rolled_back" not in version_tags(settings, "segmenter", v1)


def test_a_rolled_back_version_is_not_promoted_again(cycle: dict[str, Any]) -> None:
    result = cycle["repromote_rolled_back"]
    assert not result.promoted and "rolled back" in result.reason
    assert result.challenger_metrics["miou"] > result.champion_metrics["miou"]  # better, and still refused
    assert cycle["after_repromote"][CHAMPION] == cycle["v1"]


def test_next_scoring_run_records_the_restored_champion(cycle: dict[str, Any]) -> None:
    scores, summary = cycle["scores"], cycle["scoring"]
    assert len(scores) == summary.frames == 4
    assert set(scores["segmenter_version"]) == {cycle["v1"]}
    assert set(scores["detector_version"]) == {cycle["detector"]}
    assert (summary.segmenter_version, summary.detector_version) == (cycle["v1"], cycle["detector"])


def test_every_decision_is_an_mlflow_run_with_both_metric_sets_and_the_reason(cycle: dict[str, Any]) -> None:
    settings = load_settings(cycle["home"])
    client = MlflowClient(settings.tracking_uri)
    experiment = client.get_experiment_by_name(EXPERIMENT_PROMOTION)
    assert experiment is not None
    runs = {run.info.run_id: run for run in client.search_runs([experiment.experiment_id], max_results=100)}
    decisions = [
        "v1_default_floor",
        "v1_promotion",
        "v2_promotion",
        "v3_promotion",
        "detector_promotion",
        "repromote_rolled_back",
    ]
    for step in decisions:
        result = cycle[step]
        run = runs[result.mlflow_run_id]
        assert run.info.status == "FINISHED"
        assert run.data.tags["decision"] == ("promoted" if result.promoted else "refused"), step
        assert run.data.tags["reason"] == result.reason, step
        assert run.data.params["model"] == result.model
        assert run.data.params["challenger_version"] == result.challenger_version
        for key, value in result.challenger_metrics.items():
            assert run.data.metrics[f"challenger_{key}"] == pytest.approx(value), (step, key)
        champion = result.champion_metrics
        if step in ("v2_promotion", "v3_promotion", "repromote_rolled_back"):  # a champion existed: metrics too
            assert champion is not None
            assert run.data.params["champion_version"] == cycle["v1"]
            for key, value in champion.items():
                assert run.data.metrics[f"champion_{key}"] == pytest.approx(value), (step, key)
        else:
            assert champion is None and not any(k.startswith("champion_") for k in run.data.metrics), step
    rollbacks = [run for run in runs.values() if run.data.tags.get("decision") == "rollback"]
    assert len(rollbacks) == 1
    assert rollbacks[0].data.params["restored_version"] == cycle["v1"]
    assert rollbacks[0].data.params["demoted_version"] == cycle["v3"]
    assert len(runs) == len(decisions) + 1
