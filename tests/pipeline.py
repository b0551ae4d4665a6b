"""Builds a real workspace for the pipeline tests: synthetic data, small trained and promoted models, an ingested shift.

Everything is real (Prefect flows, MLflow SQLite registry, zarr, Dask LocalCluster); only the sizes are small.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from flows.ingest import ingest_shift
from flows.promotion import promote
from flows.results import DetectorTrainingResult, IngestResult, ScoringResult, SegmenterTrainingResult
from flows.runtime import dask_task_runner
from flows.training import train_detector_flow, train_segmenter_flow
from storage.registry import CHAMPION, alias_version
from storage.settings import load_settings
from synth.dataset import generate_dataset
from synth.shift import generate_shift
from tasks.model_ref import ModelRef

SHIFT = "night-1"


@dataclass
class Workspace:
    """Paths of the prepared workspace."""

    home: Path
    data: Path
    shift_dir: Path

    @property
    def mvtec(self) -> Path:
        return self.data / "mvtec"

    @property
    def segmentation(self) -> Path:
        return self.data / "segmentation"


#: Environment variable holding the address of the session's shared cluster (set by the ``prefect_api`` fixture).
SHARED_CLUSTER = "DEFECTFLOW_TEST_DASK_ADDRESS"


def shared_cluster() -> str:
    """Address of the session's shared cluster (for ``--dask-address`` in command-line tests)."""
    return os.environ[SHARED_CLUSTER]


def runner(home: Path, own_cluster: bool = False, workers: int = 2):
    """A Dask task runner on the session's shared cluster, or on a fresh LocalCluster of its own.

    A test that kills a worker or the scheduler needs ``own_cluster=True``; so does a run outside the session's
    fixtures (no shared cluster then).
    """
    address = None if own_cluster else os.environ.get(SHARED_CLUSTER)
    return dask_task_runner(load_settings(home), address=address, workers=workers)


def train_small_models(home: Path, data: Path, seed: int = 0) -> tuple[SegmenterTrainingResult, DetectorTrainingResult]:
    """Train the small segmenter and detector through their real flows (each registers a challenger)."""
    segmenter = train_segmenter_flow(
        data=str(data / "segmentation"),
        home=str(home),
        backbone="resnet18",
        image_size=128,
        epochs=12,
        batch_size=4,
        seed=seed,
        max_minutes=1.0,
        encoder_weights="none",  # small and fast; pretrained weights are tested in test_pretrained_weights.py
    )
    return segmenter, train_small_detector(home, data, seed)


def train_small_detector(home: Path, data: Path, seed: int = 0) -> DetectorTrainingResult:
    """The small detector of the pipeline tests, through its real flow (registers a challenger)."""
    return train_detector_flow(
        data=str(data / "mvtec"),
        home=str(home),
        backbone="resnet18",
        image_size=128,
        epochs=2,
        batch_size=8,
        seed=seed,
        max_minutes=0.5,
        teacher_weights="none",
    )


def score_shift(ws: Workspace, shift: str, own_cluster: bool = False, **kwargs) -> ScoringResult:
    """Score ``shift`` of the workspace with its champions through the real flow; returns the flow's summary."""
    from flows.scoring import nightly_scoring

    task_runner = runner(ws.home, own_cluster=own_cluster)
    return nightly_scoring.with_options(task_runner=task_runner)(shift_id=shift, home=str(ws.home), **kwargs)


def ingest(source: Path, home: Path, shift: str = "S1", **kwargs) -> IngestResult:
    """Ingest ``source`` as ``shift`` of the workspace at ``home`` through the real flow on the shared cluster."""
    return ingest_shift.with_options(task_runner=runner(home))(
        source=str(source), shift_id=shift, home=str(home), **kwargs
    )


def ingest_copy(
    ws: Workspace, shift: str, frames: int | None = None, extra: dict[str, np.ndarray] | None = None
) -> Path:
    """Ingest (the first ``frames`` of) the test shift's frames, plus ``extra`` images, as a new shift of its own.

    Tests that score or retrain work on their own shift: the session's ``SHIFT`` belongs to the scoring tests.
    """
    source = ws.home.parent / f"src-{shift}"
    source.mkdir()
    for path in sorted((ws.shift_dir / "frames").glob("*.png"))[:frames]:
        shutil.copy2(path, source / path.name)
    for name, pixels in (extra or {}).items():
        Image.fromarray(pixels).save(source / name)
    ingest(source, ws.home, shift)
    return source


def build_workspace(root: Path) -> Workspace:
    """Synthetic data, both models trained and promoted (first champions: floors relaxed), a shift ingested."""
    os.environ["DEFECTFLOW_FLOOR_IMAGE_AUROC"] = "0"
    os.environ["DEFECTFLOW_FLOOR_MIOU"] = "0"
    home, data, shift_dir = root / "home", root / "data", root / "shift"
    generate_dataset(data, train_good=24, test_good=6, test_defect_per_type=2, seg_images=16, size=(192, 256), seed=0)
    generate_shift(shift_dir, images=8, size=(384, 512), defect_rate=0.5, seed=3)
    train_small_models(home, data)
    promote(model="segmenter", home=str(home), eval_data=str(data / "segmentation"))
    promote(model="detector", home=str(home), eval_data=str(data / "mvtec"))
    ingest_shift.with_options(task_runner=runner(home))(
        source=str(shift_dir / "frames"), shift_id=SHIFT, home=str(home)
    )
    return Workspace(home=home, data=data, shift_dir=shift_dir)


REPO = Path(__file__).resolve().parents[1]


@contextmanager
def shift_held_by_another_process(home: Path, shift: str) -> Iterator[None]:
    """A separate Python process holds the shift's lock (as a running command would) until the block ends."""
    hold = (
        "import sys; from pathlib import Path; from storage.shift_lock import shift_lock\n"
        f"with shift_lock(Path({str(home)!r}), {shift!r}, 'ingest by the test'):\n"
        "    print('held', flush=True); sys.stdin.read()"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    holder = subprocess.Popen(
        [sys.executable, "-c", hold], cwd=REPO, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        yield
    finally:
        holder.communicate(timeout=30)


def champion_refs(home: Path) -> tuple[ModelRef, ModelRef]:
    """The workspace's champion segmenter and detector, pinned as a scoring run pins them."""
    settings = load_settings(home)
    refs = []
    for kind in ("segmenter", "detector"):
        version = alias_version(settings, kind, CHAMPION)
        local = settings.models_dir / "registry" / kind / version
        refs.append(ModelRef(kind, str(local), f"models:/{kind}/{version}", version))
    return refs[0], refs[1]
