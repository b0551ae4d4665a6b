"""Faults during scoring, each with real processes: the flow process killed, the Dask scheduler killed, the heatmap
disk full, the MLflow store locked, a registered model's weights damaged.

Every test checks what an operator would find afterwards: exit codes and messages, one score row per frame, heatmaps
that match their checksums, and a re-run that completes the shift.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlparse

import mlflow
import pandas as pd
import psutil
import pytest
from mlflow import MlflowClient
from typer.testing import CliRunner

from flows.cli import app
from flows.scoring import nightly_scoring
from storage.frame_store import FrameStore
from storage.registry import CHAMPION, alias_version, package_digests, register_model_dir, version_tags
from storage.score_parts import PARTS_DIR
from storage.settings import load_settings
from storage.tables import FINISHED, read_manifest, read_scores
from storage.tracking import EXPERIMENT_TRAINING, tracked_run
from tests.pipeline import Workspace, ingest_copy, runner, shared_cluster

REPO = Path(__file__).resolve().parents[1]
FRAMES = 4  # of the test shift's eight: enough for a fault to land between batches, few for a fast test


def _score(ws: Workspace, shift: str, **kwargs) -> dict:
    """Score on the session's shared cluster (no cluster start per run)."""
    task_runner = runner(ws.home)
    return nightly_scoring.with_options(task_runner=task_runner)(shift_id=shift, home=str(ws.home), **kwargs)


def _environment() -> dict[str, str]:
    """The test's environment (its Prefect API included) for a ``defectflow`` process, with a wide console."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "200"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    return env


def _wait_for_a_part(results_dir: Path, process: subprocess.Popen | None = None, timeout: float = 300) -> None:
    """Until a scoring batch has written its part table (the run is past its start and busy)."""
    parts, deadline = results_dir / PARTS_DIR, time.monotonic() + timeout
    while not (parts.is_dir() and any(parts.glob("*.parquet"))):
        assert time.monotonic() < deadline, "no scoring batch finished in time"
        assert process is None or process.poll() is None, "the command ended before any batch finished"
        time.sleep(0.05)


def _frames_in_parts(results_dir: Path) -> set[str]:
    parts = sorted((results_dir / PARTS_DIR).glob("*.parquet"))
    rows = pd.concat([pd.read_parquet(p) for p in parts]) if parts else pd.DataFrame({"image_id": [], "status": []})
    return set(rows.loc[rows["status"].isin(FINISHED), "image_id"])


def _assert_shift_complete(ws: Workspace, shift: str) -> pd.DataFrame:
    """One finished score row per ingested frame, each with a heatmap that matches its checksum; no parts left."""
    settings = load_settings(ws.home)
    results_dir = settings.results_dir(shift)
    manifest = read_manifest(results_dir)
    scores = read_scores(results_dir)
    assert sorted(scores["image_id"]) == sorted(manifest.loc[manifest["status"] == "ingested", "image_id"])
    assert scores["image_id"].is_unique
    assert scores["status"].isin(FINISHED).all(), scores[["image_id", "status", "reason"]]
    store = FrameStore(settings.store_path)
    for image_id in scores["image_id"]:
        assert store.array_problem(shift, "heatmaps", image_id) is None, image_id
    assert not list((results_dir / PARTS_DIR).glob("*.parquet"))
    return scores


def _scored_this_run(output: str) -> int:
    found = re.search(r"scored this run\s*│\s*(\d+)", output)
    assert found, output
    return int(found.group(1))


#: ``defectflow`` run as ``python -c``, printing as it exits which model runtimes its (the flow's) process imported.
_REPORTING_IMPORTS = (
    "import atexit, sys\n"
    "heavy = ('torch', 'torchvision', 'timm', 'onnxruntime')\n"
    "atexit.register(lambda: print('flow process imported:', sorted(m for m in heavy if m in sys.modules)))\n"
    "from flows.cli import main\n"
    "main()"
)


def test_a_killed_flow_process_loses_no_finished_work_and_the_rerun_completes(workspace: Workspace) -> None:
    ingest_copy(workspace, "flow-killed", frames=FRAMES)
    results_dir = load_settings(workspace.home).results_dir("flow-killed")
    command = [sys.executable, "-m", "flows.cli", "score", "--shift", "flow-killed", "--home", str(workspace.home)]
    command += ["--workers", "1", "--batch-size", "1"]
    run = subprocess.Popen(
        command, cwd=REPO, env=_environment(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        _wait_for_a_part(results_dir, run)
        started = psutil.Process(run.pid).children(recursive=True)
        run.kill()  # SIGKILL: no handler runs, nothing is cleaned up
        run.communicate(timeout=60)
    finally:
        if run.poll() is None:
            run.kill()
    assert run.returncode == -signal.SIGKILL
    _, alive = psutil.wait_procs(started, timeout=30)
    for process in alive:
        process.kill()
    assert not alive, f"left running after the command was killed: {[' '.join(p.cmdline())[:80] for p in alive]}"
    finished = _frames_in_parts(results_dir)
    assert finished, "no finished batch was left for the re-run to keep"

    rerun = subprocess.run(
        [sys.executable, "-c", _REPORTING_IMPORTS, *command[3:]],
        cwd=REPO,
        env=_environment(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert rerun.returncode == 0, rerun.stderr  # the killed command's shift lock went with it
    assert "flow process imported: []" in rerun.stdout, "the flow process imported torch (issue #14)"
    assert _scored_this_run(rerun.stdout) == FRAMES - len(finished), "finished work was scored again"
    scores = _assert_shift_complete(workspace, "flow-killed")
    assert len(scores) == FRAMES


@contextmanager
def _dask_cluster(tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen, subprocess.Popen]]:
    """A ``dask scheduler`` and a one-process ``dask worker``, as on a cluster; stopped when the block ends."""
    dask = str(Path(sys.executable).with_name("dask"))
    scheduler_file = tmp_path / "scheduler.json"
    env = _environment()
    common = ["--scheduler-file", str(scheduler_file), "--dashboard-address", ":0"]
    scheduler = subprocess.Popen(
        [dask, "scheduler", *common, "--host", "127.0.0.1", "--port", "0", "--no-show"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    worker = subprocess.Popen(
        [dask, "worker", *common, "--nworkers", "1", "--nthreads", "1", "--local-directory", str(tmp_path / "dask")],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        while not scheduler_file.is_file():
            assert time.monotonic() < deadline and scheduler.poll() is None, "the Dask scheduler did not start"
            time.sleep(0.1)
        time.sleep(0.2)  # the file is written whole, but give it a moment
        yield json.loads(scheduler_file.read_text())["address"], scheduler, worker
    finally:
        for process in (worker, scheduler):
            if process.poll() is None:
                process.terminate()
        for process in (worker, scheduler):
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def test_a_killed_dask_scheduler_fails_the_run_clearly_and_the_rerun_completes(
    workspace: Workspace, tmp_path: Path
) -> None:
    ingest_copy(workspace, "scheduler-killed", frames=FRAMES)
    results_dir = load_settings(workspace.home).results_dir("scheduler-killed")
    arguments = ["score", "--shift", "scheduler-killed", "--home", str(workspace.home), "--batch-size", "1"]
    with _dask_cluster(tmp_path) as (address, scheduler, _worker):

        def kill_the_scheduler() -> None:
            _wait_for_a_part(results_dir, timeout=300)
            scheduler.kill()

        killer = threading.Thread(target=kill_the_scheduler)
        killer.start()
        result = CliRunner().invoke(app, [*arguments, "--dask-address", address])
        killer.join()
    output = result.output.replace("\n", " ")
    assert scheduler.returncode == -signal.SIGKILL, "the scheduler was not killed during the run"
    assert result.exit_code == 75, output
    assert "the Dask scheduler went away while shift scheduler-killed was scored" in output
    assert "run the same command again" in output
    kept = read_scores(results_dir)
    assert not (kept["status"] == "failed").any(), "frames were marked failed for the scheduler's loss"
    assert kept["status"].isin(FINISHED).all() and len(kept) >= 1, "finished work was not kept"
    store = FrameStore(load_settings(workspace.home).store_path)
    for image_id in kept["image_id"]:
        assert store.array_problem("scheduler-killed", "heatmaps", image_id) is None, image_id

    late = _frames_in_parts(results_dir) - set(kept["image_id"])  # batches the worker finished after the loss

    rerun = CliRunner().invoke(app, [*arguments, "--dask-address", shared_cluster()])
    assert rerun.exit_code == 0, rerun.output
    assert _scored_this_run(rerun.output) == FRAMES - len(kept) - len(late), "finished work was scored again"
    assert len(_assert_shift_complete(workspace, "scheduler-killed")) == FRAMES


def _fill(filler: Path) -> None:
    """Take every free byte of the filesystem, so that the next write fails whatever the heatmaps' size."""
    block = b"\0" * 4096
    with filler.open("wb", buffering=0) as handle:
        try:
            while True:
                handle.write(block)
        except OSError:
            pass


@contextmanager
def _small_filesystem(path: Path, size: str) -> Iterator[None]:
    """A real small filesystem (tmpfs) mounted over ``path``, with what ``path`` held copied in; unmounted after."""
    if shutil.which("mount") is None:
        pytest.skip("no mount command: the disk-full test needs a real small filesystem")
    saved = path.with_name(f".{path.name}.saved")
    shutil.copytree(path, saved)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True)
    if mounted.returncode != 0:
        shutil.rmtree(saved)
        pytest.skip(f"cannot mount a small tmpfs here ({mounted.stderr.decode().strip()}): needs root or CAP_SYS_ADMIN")
    try:
        shutil.copytree(saved, path, dirs_exist_ok=True)
        _fill(path / ".filler")
        yield
    finally:
        subprocess.run(["umount", "--lazy", str(path)], check=True)
        shutil.rmtree(saved, ignore_errors=True)


def test_a_full_disk_while_heatmaps_are_written_fails_those_frames_clearly_and_the_rerun_completes(
    workspace: Workspace,
) -> None:
    ingest_copy(workspace, "disk-full", frames=FRAMES)
    settings = load_settings(workspace.home)
    heatmaps = settings.store_path / "shifts" / "disk-full" / "heatmaps"
    store = FrameStore(settings.store_path)
    with _small_filesystem(heatmaps, "160k"):  # full: no heatmap fits, whatever its size
        summary = _score(workspace, "disk-full", batch_size=2)
        scores = read_scores(settings.results_dir("disk-full"))
        failed = scores[scores["status"] == "failed"]
        assert summary.failed == len(failed) >= 1
        assert failed["reason"].str.contains("No space left on device").all(), failed["reason"].tolist()
        finished = scores[scores["status"].isin(FINISHED)]
        for image_id in finished["image_id"]:  # nothing half-written is taken for done
            assert store.array_problem("disk-full", "heatmaps", image_id) is None, image_id

        subprocess.run(["mount", "-o", "remount,size=64m", str(heatmaps)], check=True)  # space is back
        again = _score(workspace, "disk-full", batch_size=2)
        assert again.failed == 0 and again.scored_this_run == len(failed)
        assert len(_assert_shift_complete(workspace, "disk-full")) == FRAMES


@contextmanager
def _database_locked_on_request(database: Path) -> Iterator[threading.Event]:
    """Another process that takes an exclusive SQLite lock on ``database`` when the event is set, until the end."""
    hold = (
        "import sqlite3, sys\n"
        f"connection = sqlite3.connect({str(database)!r}, isolation_level=None, timeout=30)\n"
        "print('ready', flush=True); sys.stdin.readline()\n"
        "connection.execute('BEGIN EXCLUSIVE'); print('locked', flush=True); sys.stdin.read()\n"
        "connection.execute('ROLLBACK')\n"
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", hold], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=REPO
    )
    assert holder.stdin is not None and holder.stdout is not None
    assert holder.stdout.readline().strip() == "ready"
    request, locked = threading.Event(), threading.Event()

    def lock_when_asked() -> None:
        request.wait()
        holder.stdin.write("lock\n")
        holder.stdin.flush()
        if holder.stdout.readline().strip() == "locked":
            locked.set()

    locker = threading.Thread(target=lock_when_asked)
    locker.start()
    try:
        yield request
    finally:
        request.set()
        locker.join(timeout=60)
        holder.communicate(timeout=60)
    assert locked.is_set(), "the MLflow database was never locked"


def test_a_locked_mlflow_store_costs_the_mlflow_run_not_the_scores(workspace: Workspace) -> None:
    ingest_copy(workspace, "mlflow-locked", frames=FRAMES)
    settings = load_settings(workspace.home)
    results_dir = settings.results_dir("mlflow-locked")
    assert settings.tracking_uri == f"sqlite:///{workspace.home / 'mlflow.db'}"
    with _database_locked_on_request(workspace.home / "mlflow.db") as lock:

        def lock_once_scoring_is_under_way() -> None:  # the models are resolved from the registry by then
            _wait_for_a_part(results_dir)
            lock.set()

        locker = threading.Thread(target=lock_once_scoring_is_under_way)
        locker.start()
        summary = _score(workspace, "mlflow-locked", batch_size=1)
        locker.join()
    assert summary.mlflow_run_id is None
    assert summary.mlflow_not_logged and "the whole run" in summary.mlflow_not_logged
    assert "database is locked" in summary.mlflow_not_logged
    assert summary.scored + summary.no_component == FRAMES and summary.failed == 0
    _assert_shift_complete(workspace, "mlflow-locked")
    report = Path(summary.report).read_text()
    assert "not logged to MLflow" in report and "database is locked" in report

    again = _score(workspace, "mlflow-locked", batch_size=1)  # MLflow is back: nothing is scored, the run is logged
    assert again.scored_this_run == 0 and again.mlflow_not_logged is None
    run = MlflowClient(settings.tracking_uri).get_run(again.mlflow_run_id)
    assert run.data.params["shift_id"] == "mlflow-locked" and run.data.metrics["images"] == FRAMES


def _register_copy_of_the_champion(ws: Workspace, tmp_path: Path) -> tuple[str, Path]:
    """Register the champion detector's files again, as a new version with no alias; returns it and its weights file
    in the MLflow artifact store."""
    settings = load_settings(ws.home)
    champion = settings.models_dir / "registry" / "detector" / alias_version(settings, "detector", CHAMPION)
    package = tmp_path / "package"
    package.mkdir()
    for name in ("defectflow_model.json", "weights.pt"):
        shutil.copy2(champion / name, package / name)
    client = MlflowClient(settings.tracking_uri)
    original = client.get_model_version("detector", alias_version(settings, "detector", CHAMPION))
    # a faithful copy: the champion's run params and version tags, so other tests reading the registry see a
    # detector like any other
    with tracked_run(settings, EXPERIMENT_TRAINING, run_name="copy-of-champion") as run:
        mlflow.log_params(client.get_run(original.run_id).data.params)
        mlflow.log_artifacts(str(package), artifact_path="model")
        tags = {k: v for k, v in original.tags.items() if not k.startswith("sha256/")} | package_digests(package)
        version = register_model_dir(settings, "detector", run.info.run_id, tags=tags, alias=None)
        artifacts = Path(urlparse(mlflow.get_artifact_uri("model")).path)
    return version, artifacts / "weights.pt"


def test_registered_weights_damaged_in_the_artifact_store_are_refused_by_digest(
    workspace: Workspace, tmp_path: Path
) -> None:
    settings = load_settings(workspace.home)
    champion_tags = version_tags(settings, "detector", alias_version(settings, "detector", CHAMPION))
    assert set(champion_tags) >= {"sha256/weights.pt", "sha256/defectflow_model.json"}  # recorded by training

    version, weights = _register_copy_of_the_champion(workspace, tmp_path)
    data = bytearray(weights.read_bytes())
    middle = len(data) // 2  # inside the tensor data: torch still loads the file, with other numbers
    data[middle : middle + 64] = bytes(64)
    weights.write_bytes(bytes(data))

    ingest_copy(workspace, "damaged-model", frames=2)
    arguments = ["score", "--shift", "damaged-model", "--home", str(workspace.home), "--workers", "1"]
    result = CliRunner().invoke(app, [*arguments, "--detector", f"models:/detector/{version}"])
    output = result.output.replace("\n", " ")
    assert result.exit_code == 2, output
    assert f"detector v{version} in the registry is damaged: weights.pt has sha256" in output
    assert "defectflow rollback --model detector" in output and "--detector models:/detector/<version>" in output
    results_dir = settings.results_dir("damaged-model")
    assert read_scores(results_dir).empty and not (results_dir / PARTS_DIR).exists()
    assert not (settings.models_dir / "registry" / "detector" / version).exists(), "the damaged copy was cached"
