"""Ingest: every kind of frame lands in zarr with Pillow's pixels; bad input is quarantined, nothing is lost.

These tests run the real ``ingest_shift`` flow on a real Dask ``LocalCluster`` against a real Prefect API.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile
import zarr
from PIL import Image, ImageOps
from typer.testing import CliRunner

from flows.cli import app
from flows.results import IngestResult
from storage.frame_store import FrameStore
from storage.ids import image_id_for
from storage.shift_lock import ShiftBusy
from storage.tables import read_manifest
from tests.pipeline import ingest as _run
from tests.pipeline import shared_cluster

RNG = np.random.default_rng(7)


def _png_with_header_only(path: Path, width: int, height: int) -> None:
    """A PNG whose IHDR declares ``width`` x ``height`` RGB pixels but carries almost no data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    body = zlib.compress(b"\x00" * 64)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", body) + chunk(b"IEND", b""))


def _exif_rotated_jpeg(path: Path) -> None:
    image = Image.fromarray(RNG.integers(0, 255, (40, 64, 3), dtype=np.uint8))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    image.save(path, quality=95, exif=exif)


@pytest.fixture(scope="module")
def frames(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A source folder with every supported kind of frame, in subfolders, plus a dotfile."""
    root = tmp_path_factory.mktemp("frames")
    (root / "cam1").mkdir()
    (root / "cam2" / "deep").mkdir(parents=True)
    rgb8 = RNG.integers(0, 255, (48, 64, 3), dtype=np.uint8)
    grey8 = RNG.integers(0, 255, (48, 64), dtype=np.uint8)
    grey16 = RNG.integers(0, 65535, (48, 64), dtype=np.uint16)
    rgb16 = RNG.integers(0, 65535, (48, 64, 3), dtype=np.uint16)
    rgba8 = RNG.integers(0, 255, (48, 64, 4), dtype=np.uint8)
    Image.fromarray(rgb8).save(root / "cam1" / "rgb8.png")
    Image.fromarray(grey8).save(root / "cam1" / "grey8.png")
    Image.fromarray(grey16).save(root / "cam1" / "grey16.png")
    Image.fromarray(rgba8).save(root / "cam1" / "rgba8.png")
    Image.fromarray(rgb8).save(root / "cam2" / "rgb8.jpg", quality=90)
    Image.fromarray(grey8).save(root / "cam2" / "grey8.jpeg", quality=90)
    _exif_rotated_jpeg(root / "cam2" / "deep" / "rotated.jpg")
    tifffile.imwrite(root / "cam2" / "grey16.tif", grey16)
    tifffile.imwrite(root / "cam2" / "rgb8.tiff", rgb8)
    tifffile.imwrite(root / "cam2" / "rgb16.tif", rgb16)
    Image.fromarray(rgb8).save(root / "cam2" / "rgb8.bmp")
    Image.fromarray(grey8).save(root / "cam2" / "grey8.bmp")
    (root / ".hidden.png").write_bytes((root / "cam1" / "rgb8.png").read_bytes())
    (root / ".thumbs").mkdir()
    (root / ".thumbs" / "x.png").write_bytes(b"")
    return root


@pytest.fixture(scope="module")
def ingested(frames: Path, tmp_path_factory: pytest.TempPathFactory, prefect_api: str) -> tuple[Path, IngestResult]:
    home = tmp_path_factory.mktemp("home")
    return home, _run(frames, home)


def _pillow_pixels(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        image = ImageOps.exif_transpose(image)
        if image.mode == "RGBA":
            image = image.convert("RGB")
        pixels = np.asarray(image)
    return pixels[..., None] if pixels.ndim == 2 else pixels


def test_every_kind_equals_what_pillow_decodes(frames: Path, ingested: tuple[Path, dict]) -> None:
    home, summary = ingested
    store = FrameStore(home / "store.zarr")
    manifest = read_manifest(home / "results" / "S1").set_index("source_path")
    pillow_kinds = [
        "cam1/rgb8.png",
        "cam1/grey8.png",
        "cam1/grey16.png",
        "cam1/rgba8.png",
        "cam2/rgb8.jpg",
        "cam2/grey8.jpeg",
        "cam2/deep/rotated.jpg",
        "cam2/grey16.tif",
        "cam2/rgb8.tiff",
        "cam2/rgb8.bmp",
        "cam2/grey8.bmp",
    ]
    for relative in pillow_kinds:
        row = manifest.loc[relative]
        assert row["status"] == "ingested", (relative, row["reason"])
        stored = store.read_image("S1", row["image_id"])
        expected = _pillow_pixels(frames / relative)
        assert stored.dtype == expected.dtype, relative
        np.testing.assert_array_equal(stored, expected, err_msg=relative)
        assert (row["height"], row["width"], row["channels"]) == expected.shape
    assert summary.ingested == 12
    # EXIF orientation 6 turns a 40x64 landscape into 64x40 portrait.
    assert store.read_image("S1", manifest.loc["cam2/deep/rotated.jpg", "image_id"]).shape == (64, 40, 3)


def test_sixteen_bit_colour_tiff_keeps_its_depth(frames: Path, ingested: tuple[Path, dict]) -> None:
    home, _ = ingested
    row = read_manifest(home / "results" / "S1").set_index("source_path").loc["cam2/rgb16.tif"]
    stored = FrameStore(home / "store.zarr").read_image("S1", row["image_id"])
    np.testing.assert_array_equal(stored, tifffile.imread(frames / "cam2" / "rgb16.tif"))
    assert stored.dtype == np.uint16
    assert "tifffile" in row["reason"]


def test_array_layout_attributes_and_compression(frames: Path, ingested: tuple[Path, dict]) -> None:
    home, _ = ingested
    row = read_manifest(home / "results" / "S1").set_index("source_path").loc["cam1/rgba8.png"]
    array = zarr.open_array(home / "store.zarr" / "shifts" / "S1" / "images" / row["image_id"], mode="r")
    assert array.metadata.dimension_names == ("y", "x", "c")
    assert "zstd" in str(array.compressors).lower()
    attributes = array.attrs.asdict()
    assert attributes["source_path"] == "cam1/rgba8.png"
    assert attributes["sha256"] == row["sha256"]
    assert attributes["shape"] == [48, 64, 3]
    assert "alpha channel dropped" in attributes["conversions"]
    assert attributes["ingested_at"]


def test_dotfiles_are_ignored_and_ids_follow_paths(ingested: tuple[Path, dict]) -> None:
    home, summary = ingested
    manifest = read_manifest(home / "results" / "S1")
    assert summary.files == len(manifest) == 12
    assert not any(path.startswith(".") or "/." in path for path in manifest["source_path"])
    assert set(manifest["image_id"]) == {image_id_for(p) for p in manifest["source_path"]}
    assert manifest["image_id"].is_unique


def test_large_frames_are_chunked(tmp_path: Path, home: Path, prefect_api: str) -> None:
    source = tmp_path / "src"
    source.mkdir()
    big = RNG.integers(0, 255, (1500, 2100, 3), dtype=np.uint8)
    Image.fromarray(big).save(source / "big.png", compress_level=1)
    _run(source, home)
    array = FrameStore(home / "store.zarr").image("S1", "big.png")
    assert array.chunks == (1024, 1024, 3)
    np.testing.assert_array_equal(array[...], big)


@pytest.fixture
def bad_source(tmp_path: Path) -> Path:
    source = tmp_path / "bad"
    source.mkdir()
    good = RNG.integers(0, 255, (32, 32, 3), dtype=np.uint8)
    Image.fromarray(good).save(source / "good.png")
    (source / "empty.png").write_bytes(b"")
    full = (source / "good.png").read_bytes()
    (source / "truncated.png").write_bytes(full[: len(full) // 2])
    (source / "text.jpg").write_text("this is a text file, not a JPEG\n")
    (source / "readme.csv").write_text("a,b\n1,2\n")
    _png_with_header_only(source / "bomb.png", 60_000, 60_000)
    (source / "good_copy.png").write_bytes(full)
    return source


def test_bad_input_is_quarantined_and_the_rest_ingested(bad_source: Path, home: Path, prefect_api: str) -> None:
    summary = _run(bad_source, home, max_pixels=50_000_000)
    manifest = read_manifest(home / "results" / "S1").set_index("source_path")
    assert manifest.loc["good.png", "status"] == "ingested"
    assert manifest.loc["good_copy.png", "status"] == "duplicate"
    assert manifest.loc["good_copy.png", "reason"] == "same bytes as good.png"
    reasons = {
        name: manifest.loc[name, "reason"] for name in manifest.index if manifest.loc[name, "status"] == "quarantined"
    }
    assert set(reasons) == {"empty.png", "truncated.png", "text.jpg", "readme.csv", "bomb.png"}
    assert "0 bytes" in reasons["empty.png"]
    assert "truncated" in reasons["truncated.png"]
    assert "not a decodable image" in reasons["text.jpg"]
    assert "not a frame" in reasons["readme.csv"]
    assert "60000x60000" in reasons["bomb.png"] and "limit" in reasons["bomb.png"]
    assert summary.quarantined == 5 and summary.ingested == 1 and summary.duplicate == 1
    assert FrameStore(home / "store.zarr").image_ids("S1") == ["good.png"]


def test_rerun_adds_nothing_and_changes_nothing(bad_source: Path, home: Path, prefect_api: str) -> None:
    _run(bad_source, home)
    manifest_path = home / "results" / "S1" / "manifest.parquet"
    first = pd.read_parquet(manifest_path)
    array_meta = home / "store.zarr" / "shifts" / "S1" / "images" / "good.png" / "zarr.json"
    stamp = array_meta.stat().st_mtime_ns
    summary = _run(bad_source, home)
    pd.testing.assert_frame_equal(first, pd.read_parquet(manifest_path))
    assert array_meta.stat().st_mtime_ns == stamp
    assert summary.new == 0


def test_new_frames_in_a_later_run_are_added(bad_source: Path, home: Path, prefect_api: str) -> None:
    _run(bad_source, home)
    Image.fromarray(RNG.integers(0, 255, (20, 20, 3), dtype=np.uint8)).save(bad_source / "late.png")
    (bad_source / "late_copy.png").write_bytes((bad_source / "good.png").read_bytes())
    summary = _run(bad_source, home)
    manifest = read_manifest(home / "results" / "S1").set_index("source_path")
    assert summary.new == 2
    assert manifest.loc["late.png", "status"] == "ingested"
    assert manifest.loc["late_copy.png", "status"] == "duplicate"


def test_image_ids_are_stable_unique_and_store_safe() -> None:
    assert image_id_for("cam1/frame_0001.png") == "cam1--frame_0001.png"
    assert image_id_for("cam1/frame_0001.png") == image_id_for("cam1/frame_0001.png")
    tricky = ["a b/c.png", "a_b/c.png", "a/b--c.png", "a--b/c.png", "ü.png", "u.png", "__x.png"]
    ids = [image_id_for(p) for p in tricky]
    assert len(set(ids)) == len(ids)
    for image_id in ids:
        assert all((ch.isalnum() and ch.isascii()) or ch in "._-" for ch in image_id), image_id
        assert not image_id.startswith("__")


runner = CliRunner()


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["ingest", "{missing}", "--shift", "S1"], "does not exist"),
        (["ingest", "{empty}", "--shift", "S1"], "holds no files"),
        (["ingest", "{empty}", "--shift", "bad id!"], "not valid"),
        (["ingest", "{empty}", "--shift", "x" * 65], "not valid"),
    ],
)
def test_cli_refuses_bad_arguments_with_exit_code_2(tmp_path: Path, arguments: list[str], message: str) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / ".only_a_dotfile").write_text("x")
    filled = [a.format(missing=tmp_path / "nope", empty=empty) for a in arguments]
    result = runner.invoke(app, [*filled, "--home", str(tmp_path / "home")])
    assert result.exit_code == 2, result.output
    assert message in result.output.replace("\n", " ")
    assert not (tmp_path / "home" / "store.zarr").exists()


def test_cli_ingest_exits_zero_with_quarantined_files_and_prints_summary(
    bad_source: Path, tmp_path: Path, prefect_api: str
) -> None:
    arguments = ["ingest", str(bad_source), "--shift", "night-1", "--home", str(tmp_path / "h")]
    result = runner.invoke(app, [*arguments, "--dask-address", shared_cluster()])
    assert result.exit_code == 0, result.output
    text = result.output.replace("\n", " ")
    assert "quarantined" in text and "truncated.png" in text and "duplicate" in text


def test_an_ingest_of_a_busy_shift_refuses_with_exit_75_and_writes_nothing(
    bad_source: Path, tmp_path: Path, prefect_api: str
) -> None:
    from tests.pipeline import shift_held_by_another_process

    home = tmp_path / "h"
    arguments = ["ingest", str(bad_source), "--shift", "S1", "--home", str(home), "--dask-address", shared_cluster()]
    with shift_held_by_another_process(home, "S1"):
        result = runner.invoke(app, arguments)
        with pytest.raises(ShiftBusy, match="shift S1 is busy"):  # the flow itself, as a deployment runs it
            _run(bad_source, home)
    output = result.output.replace("\n", " ")
    assert result.exit_code == 75, output
    assert "shift S1 is busy: 'ingest by the test' (pid" in output and "run this command again" in output
    assert "Traceback" not in output
    assert not (home / "results" / "S1" / "manifest.parquet").exists()
    assert runner.invoke(app, arguments).exit_code == 0  # the lock goes with the process that held it
