"""The review app (``defectflow serve``) over HTTP, on a copy of the session's scored shift.

Everything is real: the shift was ingested and scored by the flows (``scored`` fixture), the app reads its zarr
store and parquet tables, and verdicts go to a real SQLite log. The copy keeps this module's verdicts out of the
session workspace.
"""

from __future__ import annotations

import dataclasses
import io
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from typer.testing import CliRunner

from flows.cli import app as cli
from flows.results import ScoringResult
from review.app import create_app
from review.security import TOKEN_COOKIE, Guard, check_bind
from review.server import background_server, free_port
from storage.settings import REVIEW_TOKEN_SETTING, Settings, SettingsError, load_settings
from storage.verdicts import VerdictStore
from tests.pipeline import REPO, SHIFT, Workspace

TOKEN = "a-review-token-long-enough"
LOCAL = "http://127.0.0.1:8080"  # test clients ask as a browser on this machine would


@pytest.fixture(scope="module")
def review_home(workspace: Workspace, scored: ScoringResult, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A workspace holding only a copy of the scored shift (tables, run record, frames and heatmaps)."""
    source = load_settings(workspace.home)
    home = tmp_path_factory.mktemp("review") / "home"
    shutil.copytree(source.results_dir(SHIFT), home / "results" / SHIFT)
    shutil.copytree(source.store_path / "shifts" / SHIFT, home / "store.zarr" / "shifts" / SHIFT)
    return home


@pytest.fixture(scope="module")
def settings(review_home: Path) -> Settings:
    return load_settings(review_home)


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings, reviewer="ana"), base_url=LOCAL) as test_client:
        yield test_client


def _csrf(client: TestClient) -> str:
    return re.search(r'name="csrf-token" content="([^"]+)"', client.get("/").text).group(1)


def _flagged(settings: Settings) -> list[str]:
    from storage.tables import read_scores

    scores = read_scores(settings.results_dir(SHIFT))
    flagged = scores[(scores["status"] == "scored") & scores["is_anomalous"].astype(bool)]
    return list(flagged.sort_values("score", ascending=False)["image_id"])


def test_review_package_imports_no_torch_prefect_dask_or_mlflow() -> None:
    code = (
        "import sys, review.app, review.server\n"
        "heavy = ('torch', 'prefect', 'dask', 'distributed', 'mlflow')\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & set(heavy)))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout


def test_serve_command_serves_the_workspace_on_loopback_until_interrupted(settings: Settings) -> None:
    port = free_port()
    command = [sys.executable, "-m", "flows.cli", "serve", "--home", str(settings.home), "--port", str(port)]
    server = subprocess.Popen([*command, "--reviewer", "ana"], cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        page = _poll(f"http://127.0.0.1:{port}/", server)
        assert page.status_code == 200 and f'data-shift-id="{SHIFT}"' in page.text and 'value="ana"' in page.text
    finally:
        server.send_signal(signal.SIGINT)
        output, _ = server.communicate(timeout=60)
    assert f"open http://127.0.0.1:{port}/" in output and str(settings.verdicts_path) in output


def _poll(url: str, process: subprocess.Popen) -> httpx.Response:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        try:
            return httpx.get(url, timeout=10)
        except httpx.TransportError:
            time.sleep(0.2)
    raise AssertionError(f"defectflow serve did not answer on {url} (exit code {process.poll()})")


def test_pages_list_the_shift_and_its_flagged_frames_first(
    client: TestClient, settings: Settings, scored: ScoringResult
):
    shifts = client.get("/")
    assert shifts.status_code == 200 and f'data-shift-id="{SHIFT}"' in shifts.text
    assert f"/#/runs/{scored.mlflow_run_id}" in shifts.text  # the scoring flow recorded its MLflow run
    assert f"detector {scored.detector_version}" in shifts.text
    page = client.get(f"/shifts/{SHIFT}")
    rows = re.findall(r'<tr class="frame( flagged)?" data-image-id="([^"]+)"', page.text)
    flagged = _flagged(settings)
    assert [image for mark, image in rows if mark] == flagged  # flagged, highest score first
    assert [image for _, image in rows][: len(flagged)] == flagged and len(rows) == scored.frames
    some = rows[0][1]
    frame = client.get(f"/shifts/{SHIFT}/frames/{some}")
    assert frame.status_code == 200 and 'id="viewer"' in frame.text and "threshold 0.5" in frame.text
    scored_only = client.get(f"/shifts/{SHIFT}", params={"status": "flagged", "score_min": "0.5"})
    assert len(re.findall(r'<tr class="frame', scored_only.text)) == len(flagged)
    assert 'data-image-id="' not in client.get(f"/shifts/{SHIFT}", params={"reviewed": "yes"}).text


def test_region_answers_the_requested_size_and_never_more(client: TestClient, settings: Settings) -> None:
    image = _all_frames(settings)[0]
    url = f"/shifts/{SHIFT}/frames/{image}/region"
    height, width = 384, 512  # the session shift's frames
    whole = client.get(url, params={"layer": "image", "x": 0, "y": 0, "w": width, "h": height, "width": 128})
    assert whole.status_code == 400  # every parameter is required
    sizes = {}
    for layer in ("image", "heatmap", "contour"):
        for asked, region in (((128, 96), (0, 0, width, height)), ((400, 400), (100, 50, 60, 40))):
            x, y, w, h = region
            params = {"layer": layer, "x": x, "y": y, "w": w, "h": h, "width": asked[0], "height": asked[1]}
            answer = client.get(url, params=params)
            assert answer.status_code == 200, answer.text
            sizes[layer, asked] = Image.open(io.BytesIO(answer.content)).size
    assert {sizes[layer, (128, 96)] for layer in ("image", "heatmap", "contour")} == {(128, 96)}
    assert {sizes[layer, (400, 400)] for layer in ("image", "heatmap", "contour")} == {(60, 40)}  # not enlarged
    outside = {"layer": "image", "x": width + 10, "y": 0, "w": 10, "h": 10, "width": 10, "height": 10}
    assert client.get(url, params=outside).status_code == 400
    huge = {"layer": "image", "x": 0, "y": 0, "w": width, "h": height, "width": 100_000, "height": 10}
    assert client.get(url, params=huge).status_code == 400


@pytest.mark.parametrize(
    "path",
    [
        "/shifts/no-such-shift",
        "/shifts/%2e%2e",
        "/shifts/.%2e",
        "/shifts/..%2F..%2Fetc",
        "/shifts/bad$id",
        f"/shifts/{SHIFT}/frames/no-such-frame",
        f"/shifts/{SHIFT}/frames/%2e%2e",
        f"/shifts/{SHIFT}/frames/%2e%2e/region?layer=image&x=0&y=0&w=9&h=9&width=9&height=9",
        f"/shifts/{SHIFT}/frames/..%2F..%2Fmanifest.parquet",
        f"/shifts/{SHIFT}/frames/manifest.parquet/region?layer=image&x=0&y=0&w=9&h=9&width=9&height=9",
        "/static/..%2F..%2Fstorage%2Fsettings.py",
        "/shifts/..%2F..%2F..%2Fetc%2Fpasswd/frames/x",
    ],
)
def test_unknown_ids_and_path_traversal_answer_404_without_a_trace(client: TestClient, path: str) -> None:
    answer = client.get(path)
    assert answer.status_code == 404, (path, answer.status_code, answer.text[:200])
    assert len(answer.text) < 200 and "Traceback" not in answer.text and "root:" not in answer.text


def test_token_is_required_off_loopback(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(SettingsError, match=REVIEW_TOKEN_SETTING):
        check_bind("0.0.0.0", None)
    check_bind("127.0.0.1", None)
    check_bind("::1", None)
    monkeypatch.delenv(REVIEW_TOKEN_SETTING, raising=False)
    refused = CliRunner().invoke(cli, ["serve", "--home", str(settings.home), "--host", "0.0.0.0"])
    assert refused.exit_code == 2 and REVIEW_TOKEN_SETTING in refused.output
    monkeypatch.setenv(REVIEW_TOKEN_SETTING, "short")
    with pytest.raises(SettingsError, match="at least 16"):
        load_settings(settings.home)
    guarded = create_app(dataclasses.replace(settings, review_token=TOKEN), guard=Guard(TOKEN, loopback=False))
    with TestClient(guarded, base_url="http://inspection-pc.plant:8080") as remote:
        assert remote.get("/").status_code == 401
        assert remote.get("/static/review.css").status_code == 401
        assert remote.get("/", params={"token": "wrong-token-of-some-length"}).status_code == 401
        assert remote.get("/", headers={"X-Review-Token": TOKEN}).status_code == 200
        first = remote.get(f"/shifts/{SHIFT}", params={"token": TOKEN, "status": "all"}, follow_redirects=False)
        assert first.status_code == 303 and "token" not in first.headers["location"]
        assert first.cookies.get(TOKEN_COOKIE) == TOKEN
        assert remote.get(f"/shifts/{SHIFT}").status_code == 200  # the cookie carries it from now on


def test_loopback_app_answers_loopback_host_names_only(client: TestClient) -> None:
    assert client.get("/", headers={"Host": "localhost:8080"}).status_code == 200
    assert client.get("/", headers={"Host": "attacker.example:8080"}).status_code == 403  # DNS rebinding


def test_verdict_endpoint_refuses_cross_site_and_stale_pages(client: TestClient, settings: Settings) -> None:
    image = _all_frames(settings)[-1]
    url = f"/shifts/{SHIFT}/frames/{image}/verdicts"
    form = {"verdict": "defect", "reviewer": "eve"}
    before = len(VerdictStore(settings.verdicts_path).history(SHIFT))
    assert client.post(url, data=form).status_code == 403
    assert client.post(url, data={**form, "csrf_token": "guessed"}).status_code == 403
    token = _csrf(client)
    evil = {"Origin": "http://attacker.example"}
    assert client.post(url, data={**form, "csrf_token": token}, headers=evil).status_code == 403
    cross = {"Sec-Fetch-Site": "cross-site"}
    assert client.post(url, data={**form, "csrf_token": token}, headers=cross).status_code == 403
    assert len(VerdictStore(settings.verdicts_path).history(SHIFT)) == before
    nameless = client.post(url, data={"verdict": "defect", "reviewer": " ", "csrf_token": token})
    assert nameless.status_code == 400 and "reviewer name is empty" in nameless.text
    unknown = client.post(url, data={**form, "verdict": "maybe", "csrf_token": token})
    assert unknown.status_code == 400 and "use one of" in unknown.text
    same_site = {"Origin": LOCAL, "Accept": "application/json"}
    answer = client.post(url, data={**form, "csrf_token": token, "defect_type": "scratch"}, headers=same_site)
    assert answer.status_code == 201 and answer.json()["defect_type"] == "scratch"
    assert 'data-verdict="defect"' in client.get(f"/shifts/{SHIFT}/frames/{image}").text


def test_concurrent_verdicts_from_several_clients_are_all_counted(settings: Settings) -> None:
    frames = _all_frames(settings)
    with background_server(create_app(settings)) as base:
        token = re.search(r'name="csrf-token" content="([^"]+)"', httpx.get(base).text).group(1)
        before = len(VerdictStore(settings.verdicts_path).history(SHIFT))
        failures: list[str] = []

        def reviewer(number: int) -> None:
            with httpx.Client(base_url=base, timeout=60) as http:
                for index in range(8):
                    image = frames[(number + index) % len(frames)]
                    form = {"verdict": "unsure", "reviewer": f"r{number}", "csrf_token": token, "note": str(index)}
                    answer = http.post(f"/shifts/{SHIFT}/frames/{image}/verdicts", data=form)
                    if answer.status_code != 303:
                        failures.append(f"{answer.status_code} {answer.text[:100]}")

        threads = [threading.Thread(target=reviewer, args=(number,)) for number in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert failures == []
    added = VerdictStore(settings.verdicts_path).history(SHIFT)[before:]
    assert len(added) == 48 and {(r.reviewer, r.note) for r in added} == {
        (f"r{n}", str(i)) for n in range(6) for i in range(8)
    }


def _all_frames(settings: Settings) -> list[str]:
    from storage.tables import read_scores

    return sorted(read_scores(settings.results_dir(SHIFT))["image_id"])
