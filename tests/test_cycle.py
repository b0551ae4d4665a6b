"""The unattended cycle: champion, a refused bad challenger, a promoted better one, rollback, and scoring after it.

Real flows, a real MLflow SQLite registry and a real Dask LocalCluster in a temporary workspace.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
from mlflow import MlflowClient
from PIL import Image

from flows.promotion import promote, rollback
from flows.retraining import retrain
from flows.training import train_detector_flow
from storage.registry import CHAMPION, PREVIOUS, alias_version, list_versions, version_tags
from storage.settings import load_settings
from storage.tables import read_scores
from tests.pipeline import SHIFT, Workspace, runner
from tests.test_scoring import _ingest_copy, _score


def _corrupted_copy(mvtec: Path, target: Path) -> Path:
    """The training set with every 'good' image replaced by noise: a model trained on it must be refused."""
    shutil.copytree(mvtec, target)
    rng = np.random.default_rng(0)
    for path in (target / "train" / "good").iterdir():
        with Image.open(path) as image:
            size = image.size
        Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(path)
    return target


def test_promotion_cycle(workspace: Workspace, tmp_path: Path) -> None:
    home, settings = str(workspace.home), load_settings(workspace.home)
    mvtec = str(workspace.mvtec)
    v1 = alias_version(settings, "detector", CHAMPION)
    assert v1 is not None, "the workspace starts with a promoted detector"

    # v2: trained on corrupted data, refused by the gate
    corrupted = _corrupted_copy(workspace.mvtec, tmp_path / "corrupted")
    v2 = train_detector_flow(
        data=str(corrupted), home=home, backbone="resnet18", image_size=64, epochs=3, batch_size=8, max_minutes=0.5
    )["version"]
    refused = promote(model="detector", home=home, eval_data=mvtec)
    assert not refused["promoted"], refused
    assert alias_version(settings, "detector", CHAMPION) == v1

    # v3: retrained on the scored shift's confidently normal frames plus the curated good parts, promoted
    _score(workspace, SHIFT)
    retrained = retrain.with_options(task_runner=runner(workspace.home))(
        home=home,
        shifts=[SHIFT],
        good_dir=str(workspace.mvtec / "train" / "good"),
        eval_data=mvtec,
        backbone="resnet18",
        image_size=64,
        epochs=12,
        max_minutes=1.0,
    )
    v3 = retrained["detector"]["version"]
    tags = version_tags(settings, "detector", v3)
    assert SHIFT in tags["shifts"] or tags["shifts"] == "none"
    assert int(tags["frame_count"]) >= 24 and len(tags["training_list_sha256"]) == 64 and tags["git_commit"]
    accepted = promote(model="detector", home=home, eval_data=mvtec)
    assert accepted["promoted"], accepted
    assert alias_version(settings, "detector", CHAMPION) == v3
    assert alias_version(settings, "detector", PREVIOUS) == v1
    assert {v1, v2, v3} <= {row["version"] for row in list_versions(settings, "detector")}

    # every decision is an MLflow run in experiment 'promotion' with both metric sets and the reason
    client = MlflowClient(settings.tracking_uri)
    experiment = client.get_experiment_by_name("promotion")
    decisions = {
        run.data.params["challenger_version"]: run
        for run in client.search_runs([experiment.experiment_id])
        if "challenger_version" in run.data.params
    }
    assert decisions[v2].data.tags["decision"] == "refused" and decisions[v2].data.tags["reason"]
    assert decisions[v3].data.tags["decision"] == "promoted"
    assert {"challenger_image_auroc", "champion_image_auroc"} <= set(decisions[v3].data.metrics)

    # rollback restores the previous champion, and the next scoring run records it
    rollback(model="detector", home=home)
    assert alias_version(settings, "detector", CHAMPION) == v1
    _ingest_copy(workspace, "after-rollback")
    _score(workspace, "after-rollback")
    scores = read_scores(settings.results_dir("after-rollback"))
    assert set(scores["detector_version"]) == {v1}
