"""Log a model directory to the active MLflow run and register it as a new version with the ``challenger`` alias."""

from __future__ import annotations

import subprocess
from pathlib import Path

from storage.registry import MODEL_ARTIFACT_PATH, package_digests, register_model_dir
from storage.settings import Settings
from storage.tracking import log_artifacts


def git_commit() -> str:
    """The commit of the code that trained the model (``unknown`` outside a git checkout)."""
    try:
        result = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            cwd=Path(__file__).resolve().parent,
            timeout=10,
        )
        return result.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def publish_model(settings: Settings, name: str, package_dir: Path, run_id: str, tags: dict[str, str]) -> str:
    """Upload ``package_dir`` as the run's ``model/`` artifacts and register it with the digest of each file;
    returns the version."""
    log_artifacts(package_dir, MODEL_ARTIFACT_PATH)
    digests = package_digests(package_dir)
    return register_model_dir(settings, name, run_id, tags={"git_commit": git_commit(), **tags, **digests})
