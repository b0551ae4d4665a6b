"""The zarr store's locations: a folder or any fsspec URL, through zarr alone."""

from __future__ import annotations

import uuid
from pathlib import Path

import numpy as np

from storage.frame_store import FrameStore


def test_frame_store_works_on_an_fsspec_url_as_on_a_folder() -> None:
    """Every store location goes through zarr, so an fsspec URL (here fsspec's in-memory filesystem) just works."""
    store = FrameStore(f"memory://defectflow-{uuid.uuid4().hex}/store.zarr")
    assert not store.has_shift("night-1") and store.image_ids("night-1") == []
    store.ensure_shift("night-1", source="/frames")
    pixels = np.arange(6 * 8 * 3, dtype=np.uint8).reshape(6, 8, 3)
    store.write_image("night-1", "b.png", pixels, {})
    store.write_image("night-1", "a.png", pixels[::-1].copy(), {})
    store.write_heatmap("night-1", "a.png", (6, 8), (1, 2, 4, 6), np.ones((3, 4), dtype=np.float16), {})
    assert store.has_shift("night-1") and store.image_ids("night-1") == ["a.png", "b.png"]
    assert store.shift_source("night-1") == "/frames"
    np.testing.assert_array_equal(store.read_image("night-1", "b.png"), pixels)
    assert float(store.heatmap("night-1", "a.png")[...].sum()) == 12.0
    assert store.array_problem("night-1", "heatmaps", "a.png") is None
    assert "missing" in store.array_problem("night-1", "images", "c.png")


def test_a_file_url_store_creates_its_folders_like_a_folder_store(tmp_path: Path) -> None:
    """fsspec's local filesystem makes no parent folders unless asked; the store asks, so ``file://`` URLs (a
    shared mount named as ``DEFECTFLOW_STORE_URL``) work from an empty folder."""
    store = FrameStore(f"file://{tmp_path}/bucket/store.zarr/")
    pixels = np.arange(4 * 5 * 3, dtype=np.uint8).reshape(4, 5, 3)
    store.ensure_shift("S1")
    store.write_image("S1", "a.png", pixels, {})
    store.write_heatmap("S1", "a.png", (4, 5), None, None, {})
    np.testing.assert_array_equal(FrameStore(tmp_path / "bucket" / "store.zarr").read_image("S1", "a.png"), pixels)
    assert (tmp_path / "bucket" / "store.zarr" / "shifts" / "S1" / "heatmaps" / "a.png" / "zarr.json").is_file()
    assert store.image_ids("S1") == ["a.png"] and store.array_problem("S1", "heatmaps", "a.png") is None
