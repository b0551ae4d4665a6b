"""Real ``defectflow`` processes, each with its own temporary Prefect server: two at once, and signals.

Prefect's default of 20 s to start a temporary API server is too short when two start at once on a busy
machine; two commands on the same shift must not both rewrite its tables; and a command stopped by SIGTERM or
Ctrl-C must stop its server and workers, exit with 128 + the signal and say how to resume.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psutil
import pytest
from PIL import Image

from storage.frame_store import FrameStore
from storage.tables import read_manifest

REPO = Path(__file__).resolve().parents[1]


def _environment(prefect_home: Path) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("PREFECT_")}
    env.update(PREFECT_HOME=str(prefect_home), PREFECT_LOGGING_LEVEL="WARNING", OMP_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    return env


def test_prefect_startup_timeout_is_set_before_prefect_reads_its_settings(tmp_path: Path) -> None:
    check = (
        "import flows.cli, flows.ingest, flows.runtime\n"
        "from prefect.settings import PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS as timeout\n"
        "print(timeout.value())"
    )
    env = _environment(tmp_path / "prefect")
    result = subprocess.run([sys.executable, "-c", check], cwd=REPO, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert float(result.stdout.strip()) >= 120


def test_two_ingests_of_one_shift_started_together_on_a_fresh_prefect_home(tmp_path: Path) -> None:
    source = tmp_path / "src"
    source.mkdir()
    rng = np.random.default_rng(3)
    frames = {f"f{i:02d}.png": rng.integers(0, 255, (64, 96, 3), dtype=np.uint8) for i in range(12)}
    for name, pixels in frames.items():
        Image.fromarray(pixels).save(source / name)
    home = tmp_path / "home"
    command = [
        sys.executable,
        "-m",
        "flows.cli",
        "ingest",
        str(source),
        "--shift",
        "S1",
        "--home",
        str(home),
        "--workers",
        "1",
    ]
    env = _environment(tmp_path / "fresh-prefect-home")
    runs = [
        subprocess.Popen(
            [*command, "--workers", "1"], cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        for _ in range(2)
    ]
    results = [(run.wait(timeout=400), *(stream.decode() for stream in run.communicate())) for run in runs]
    codes = sorted(code for code, _, _ in results)
    assert codes in ([0, 0], [0, 75]), results
    for code, _, stderr in results:
        assert code == 0 or "shift S1 is busy" in stderr, stderr
    manifest = read_manifest(home / "results" / "S1")
    assert sorted(manifest["source_path"]) == sorted(frames) and (manifest["status"] == "ingested").all()
    store = FrameStore(home / "store.zarr")
    for row in manifest.itertuples(index=False):
        np.testing.assert_array_equal(store.read_image("S1", row.image_id), frames[row.source_path])


@pytest.fixture(scope="module")
def busy_source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Enough noise frames that an ingest with one worker is still busy when the signal arrives (read-only)."""
    source = tmp_path_factory.mktemp("busy") / "src"
    source.mkdir()
    rng = np.random.default_rng(5)
    for index in range(120):
        Image.fromarray(rng.integers(0, 255, (384, 512, 3), dtype=np.uint8)).save(source / f"f{index:03d}.png")
    return source


@pytest.mark.parametrize(
    ("signum", "to_group"),
    [(signal.SIGTERM, False), (signal.SIGINT, True)],  # kill PID; Ctrl-C signals the terminal's process group
)
def test_an_interrupted_ingest_stops_everything_it_started_and_says_how_to_resume(
    tmp_path: Path, busy_source: Path, signum: int, to_group: bool
) -> None:
    source = busy_source
    home = tmp_path / "home"
    command = [sys.executable, "-m", "flows.cli", "ingest", str(source), "--shift", "S1", "--home", str(home)]
    env = _environment(tmp_path / "prefect")
    run = subprocess.Popen(
        [*command, "--workers", "1"],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    images, deadline = home / "store.zarr" / "shifts" / "S1" / "images", time.monotonic() + 300
    while not (images.is_dir() and any(p.is_dir() for p in images.iterdir())) and time.monotonic() < deadline:
        time.sleep(0.1)  # until the first frames are stored: the server and the cluster are up, the ingest is busy
    started = psutil.Process(run.pid).children(recursive=True)
    assert any("uvicorn" in " ".join(p.cmdline()) for p in started), "no temporary Prefect server to watch"
    if to_group:
        os.killpg(run.pid, signum)
    else:
        run.send_signal(signum)
    _, stderr = run.communicate(timeout=180)
    assert run.returncode == 128 + signum, stderr
    _, alive = psutil.wait_procs(started, timeout=20)
    for process in alive:
        process.kill()
    assert not alive, [" ".join(p.cmdline())[:80] for p in alive]
    assert "Traceback" not in stderr, stderr
    assert "run the same command again to resume" in stderr.strip().splitlines()[-1], stderr
    assert not (home / "results" / "S1" / "manifest.parquet").exists()
    if signum == signal.SIGTERM:
        resumed = subprocess.run([*command, "--workers", "2"], cwd=REPO, env=env, capture_output=True, timeout=400)
        assert resumed.returncode == 0, resumed.stderr
        manifest = read_manifest(home / "results" / "S1")
        assert len(manifest) == 120 and (manifest["status"] == "ingested").all()
