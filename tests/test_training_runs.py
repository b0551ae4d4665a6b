"""What the training flows leave in MLflow: a reader of the run must see how the model was made.

Uses the session workspace, whose small models were trained through the real flows with random initialisation.
"""

from __future__ import annotations

from mlflow import MlflowClient

from storage.settings import load_settings
from storage.tracking import EXPERIMENT_TRAINING
from tests.pipeline import Workspace


def _training_runs(workspace: Workspace) -> dict[str, dict[str, str]]:
    settings = load_settings(workspace.home)
    client = MlflowClient(tracking_uri=settings.tracking_uri)
    experiment = client.get_experiment_by_name(EXPERIMENT_TRAINING)
    assert experiment is not None, "no training experiment in the workspace's MLflow store"
    runs = client.search_runs([experiment.experiment_id])
    return {run.data.params["model"]: run.data.params for run in runs}


def test_runs_say_the_networks_were_randomly_initialised(workspace: Workspace) -> None:
    runs = _training_runs(workspace)
    assert runs["detector"]["teacher_weights"] == "random"
    assert runs["detector"]["teacher_pretrained"] == "false"
    assert "random" in runs["detector"]["teacher_weights_detail"]
    assert runs["segmenter"]["encoder_pretrained"] == "false"
    assert "random" in runs["segmenter"]["encoder_weights_detail"]


def test_detector_run_records_the_recipe_and_flat_calibration(workspace: Workspace) -> None:
    params = _training_runs(workspace)["detector"]
    assert params["recipe_lr"] == "0.001"  # the small configuration's rate, as resnet18 gets DetectorConfig.small
    assert params["config_feature_standardisation"] == "True"
    assert float(params["calibration_image_threshold"]) > 0
    assert params["calibration_method"] == "normal-quantile"
    assert int(params["calibration_n_normal"]) > 0


def test_models_command_shows_where_each_versions_weights_came_from(workspace: Workspace) -> None:
    from typer.testing import CliRunner

    from flows.cli import app
    from storage.registry import list_versions

    for model in ("segmenter", "detector"):
        rows = list_versions(load_settings(workspace.home), model)
        assert rows and all(row["weights"].startswith("random: resnet18 random initialisation") for row in rows)
    result = CliRunner().invoke(app, ["models", "--home", str(workspace.home)])
    assert result.exit_code == 0, result.output
    assert "random" in result.output and "weights" in result.output


def test_detector_run_records_its_recipe_family_and_divergence_record(workspace: Workspace) -> None:
    params = _training_runs(workspace)["detector"]
    assert params["recipe_family"] == "small-resnet"
    assert params["nonfinite_recoveries"] == "0"
