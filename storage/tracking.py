"""MLflow tracking for defectflow: the workspace's embedded store unless ``MLFLOW_TRACKING_URI`` names another.

Experiments made here keep their artifacts inside the workspace (``mlartifacts/``) so that a workspace folder is
self-contained: copy it, and models, metrics and plots come along.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from storage.settings import Settings

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

EXPERIMENT_TRAINING = "training"
EXPERIMENT_SCORING = "nightly-scoring"
EXPERIMENT_PROMOTION = "promotion"
EXPERIMENT_EVALUATION = "evaluation"


def client(settings: Settings) -> Any:
    """An ``MlflowClient`` on the workspace's tracking URI (also made the process default)."""
    import mlflow
    from mlflow import MlflowClient

    settings.ensure()
    # mlflow.set_tracking_uri also exports MLFLOW_TRACKING_URI; keep the user's value (or its absence) so that a
    # later workspace in this process, and child processes, are not silently pointed at this one.
    users_value = os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(settings.tracking_uri)
    if users_value is None:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    else:
        os.environ["MLFLOW_TRACKING_URI"] = users_value
    return MlflowClient(tracking_uri=settings.tracking_uri)


def experiment_id(settings: Settings, name: str) -> str:
    """Id of experiment ``name``, created on first use (artifacts in the workspace for the embedded store)."""
    mlflow_client = client(settings)
    found = mlflow_client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    location = None
    if settings.tracking_uri.startswith("sqlite:///") and str(settings.home) in settings.tracking_uri:
        location = (settings.artifact_root / name).as_uri()
    try:
        return mlflow_client.create_experiment(name, artifact_location=location)
    except Exception:  # created concurrently by another process
        found = mlflow_client.get_experiment_by_name(name)
        if found is None:
            raise
        return found.experiment_id


@contextmanager
def tracked_run(
    settings: Settings, experiment: str, run_name: str | None = None, tags: dict[str, str] | None = None
) -> Iterator[Any]:
    """Start an MLflow run in ``experiment``; it ends FAILED if the body raises."""
    import mlflow

    eid = experiment_id(settings, experiment)
    with mlflow.start_run(experiment_id=eid, run_name=run_name, tags=tags or {}) as run:
        yield run


def log_params(params: dict[str, Any]) -> None:
    """Log params to the active run, stringifying values MLflow would refuse (lists, None)."""
    import mlflow

    mlflow.log_params({key: ("none" if value is None else str(value))[:6000] for key, value in params.items()})


def log_metrics(metrics: dict[str, Any], step: int | None = None) -> None:
    """Log the numeric entries of ``metrics`` to the active run (others are skipped)."""
    import mlflow

    numeric = {
        key: float(value)
        for key, value in metrics.items()
        if isinstance(value, int | float) and not isinstance(value, bool) and value == value
    }
    if numeric:
        mlflow.log_metrics(numeric, step=step)


def log_artifact(path: str | os.PathLike[str], folder: str | None = None) -> None:
    """Upload one file to the active run (into ``folder`` of its artifacts when given)."""
    import mlflow

    mlflow.log_artifact(str(path), artifact_path=folder)


def log_artifacts(directory: str | os.PathLike[str], folder: str | None = None) -> None:
    """Upload a directory's files to the active run (into ``folder`` of its artifacts when given)."""
    import mlflow

    mlflow.log_artifacts(str(directory), artifact_path=folder)


def set_tags(tags: dict[str, str]) -> None:
    """Tag the active run."""
    import mlflow

    mlflow.set_tags(tags)
