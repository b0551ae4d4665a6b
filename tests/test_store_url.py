"""``DEFECTFLOW_STORE_URL``: the workspace's frames and heatmaps in a store elsewhere, reached through fsspec."""

from __future__ import annotations

from pathlib import Path

import pytest
from fsspec.registry import known_implementations

from storage.frame_store import FrameStore
from storage.settings import STORE_URL_SETTING, SettingsError, load_settings
from tests.pipeline import Workspace, ingest_copy, score_shift

SHIFT = "object-store"


def test_ingest_and_scoring_write_frames_and_heatmaps_to_the_store_url(
    workspace: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Real flows on the session's cluster with the store at a ``file://`` URL outside the workspace: the worker
    processes (started before the setting) write there, because every task is handed the one location."""
    shared = tmp_path / "shared-bucket"
    url = f"file://{shared}/store.zarr"
    monkeypatch.setenv(STORE_URL_SETTING, url)
    assert load_settings(workspace.home).store_path == url

    ingest_copy(workspace, SHIFT, frames=2)
    summary = score_shift(workspace, SHIFT, batch_size=2)

    store = FrameStore(url)
    frames = store.image_ids(SHIFT)
    assert len(frames) == 2 and summary.frames == 2
    assert summary.scored + summary.no_component == 2 and summary.failed == 0
    for image_id in frames:
        assert store.read_image(SHIFT, image_id).shape[:2] == store.heatmap(SHIFT, image_id).shape
    on_disk = shared / "store.zarr" / "shifts" / SHIFT
    assert sorted(p.name for p in (on_disk / "images").iterdir() if p.is_dir()) == frames
    assert sorted(p.name for p in (on_disk / "heatmaps").iterdir() if p.is_dir()) == frames
    assert not (workspace.home / "store.zarr" / "shifts" / SHIFT).exists()


def test_without_the_setting_the_store_is_the_workspaces_folder(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(STORE_URL_SETTING, raising=False)
    assert load_settings(home).store_path == home.resolve() / "store.zarr"
    monkeypatch.setenv(STORE_URL_SETTING, "elsewhere/store.zarr/")
    assert load_settings(home).store_path == Path("elsewhere/store.zarr").resolve()


def test_a_store_url_whose_filesystem_is_missing_says_what_to_install(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(
        known_implementations, "defectflowtest", {"class": "defectflow_absent_fs.FS", "err": "Install it"}
    )
    monkeypatch.setenv(STORE_URL_SETTING, "defectflowtest://bucket/store.zarr")
    with pytest.raises(SettingsError, match=r"not installed.*pip install defectflow_absent_fs"):
        load_settings(home)
    monkeypatch.setenv(STORE_URL_SETTING, "nosuchfs://bucket/store.zarr")
    with pytest.raises(SettingsError, match=r"fsspec knows no 'nosuchfs' filesystem.*s3fs"):
        load_settings(home)
