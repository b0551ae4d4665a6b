"""Which MLflow run recorded a shift's scoring: ``results/<shift>/scoring_run.json``.

The review app links each shift to its run without importing MLflow (``review/`` depends on ``storage/`` only, and
MLflow's store may be out of reach while the workspace is not), so the scoring flow leaves the run id beside the
shift's tables.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

SCORING_RUN_FILE = "scoring_run.json"


@dataclass(frozen=True)
class ScoringRun:
    """The MLflow run of a shift's last scoring that was logged."""

    run_id: str
    tracking_uri: str


def write_scoring_run(results_dir: Path, run: ScoringRun) -> Path:
    """Record ``run`` for the shift (atomically: a reader sees the old record or the new one)."""
    path = results_dir / SCORING_RUN_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(handle, "w", encoding="utf-8") as file:
        json.dump(asdict(run), file)
    os.replace(temporary, path)
    return path


def read_scoring_run(results_dir: Path) -> ScoringRun | None:
    """The recorded run, or ``None`` when none was recorded (or the record is unreadable)."""
    try:
        values = json.loads((results_dir / SCORING_RUN_FILE).read_text(encoding="utf-8"))
        return ScoringRun(run_id=str(values["run_id"]), tracking_uri=str(values["tracking_uri"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None
