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
from flows.ingest import ingest_shift
from flows.results import IngestResult
from storage.frame_store import FrameStore
from storage.ids import image_id_for
from storage.shift_lock import ShiftBusy
from storage.tables import read_manifest
from tests.pipeline import runner as task_runner_for
from tests.pipeline import shared_cluster

RNG = np.random.default_rng(7)


def _run(source: Path, home: Path, shift: str = "S1", **kwargs) -> IngestResult:
    return ingest_shift.with_options(task_runner=task_runner_for(home))(
        source=str(source), shift_id=shift, home=str(home), **kwargs
    )


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


# Every kind of name the mapping folds together: folder separators against dashes, replaced characters against
# the replacement, the prefix added to names a store refuses, truncation of long paths, and a clean name that
# looks like a folded one with its digest.
COLLIDING_NAMES = [
    "cam1-/frame.png",
    "cam1/-frame.png",
    "cam1---frame.png",
    "cam1/--frame.png",
    "cam1--/frame.png",
    "a b.png",
    "a_b.png",
    "a?b.png",
    "ü.png",
    "_.png",
    "__x.png",
    "f__x.png",
    ".x/y.png",
    "f.x--y.png",
    "a/b/c.png",
    "a--b--c.png",
    "a--b/c.png",
    "x" * 250 + "1.png",
    "x" * 250 + "2.png",
]


def test_image_ids_are_injective_over_every_folded_kind_of_name() -> None:
    ids = [image_id_for(p) for p in COLLIDING_NAMES]
    assert len(set(ids)) == len(ids), sorted(ids)
    # A clean name that merely looks like a folded one (digest suffix and all) keeps its own id.
    folded = image_id_for("a b.png")
    assert image_id_for(folded) != folded
    assert image_id_for("cam1/frame_0001.png") == "cam1--frame_0001.png"  # plain paths stay readable


def test_colliding_names_each_keep_their_frame(tmp_path: Path, home: Path, prefect_api: str) -> None:
    source = tmp_path / "src"
    pixels = {}
    for index, name in enumerate(["cam1-/frame.png", "cam1/-frame.png", "cam1---frame.png", "a b.png", "a_b.png"]):
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        pixels[name] = np.full((8, 8, 3), index * 40, dtype=np.uint8)
        Image.fromarray(pixels[name]).save(source / name)
    summary = _run(source, home)
    manifest = read_manifest(home / "results" / "S1").set_index("source_path")
    store = FrameStore(home / "store.zarr")
    assert summary.ingested == 5 and manifest["image_id"].is_unique
    assert len(store.image_ids("S1")) == 5
    for name, expected in pixels.items():
        np.testing.assert_array_equal(store.read_image("S1", manifest.loc[name, "image_id"]), expected)


def _ingested_pixels(home: Path, shift: str = "S1") -> dict[str, np.ndarray]:
    manifest = read_manifest(home / "results" / shift)
    store = FrameStore(home / "store.zarr")
    stored = manifest[manifest["status"] == "ingested"]
    return {row.source_path: store.read_image(shift, row.image_id) for row in stored.itertuples(index=False)}


def test_a_changed_source_is_refused_and_the_first_ingest_stays_the_record(
    tmp_path: Path, home: Path, prefect_api: str
) -> None:
    source = tmp_path / "src"
    source.mkdir()
    for name in ("a.png", "b.png", "c.png", "d.png"):
        Image.fromarray(RNG.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(source / name)
    _run(source, home)
    first = read_manifest(home / "results" / "S1").set_index("source_path")
    pixels = _ingested_pixels(home)
    Image.fromarray(RNG.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(source / "a.png")  # new pixels
    (source / "b.png").write_bytes((source / "b.png").read_bytes()[:40])  # truncated
    (source / "c.png").write_bytes((source / "d.png").read_bytes())  # a copy of another frame
    summary = _run(source, home)
    manifest = read_manifest(home / "results" / "S1").set_index("source_path")
    assert set(summary.refused) == {"a.png", "b.png", "c.png"}
    for name in ("a.png", "b.png", "c.png"):
        assert manifest.loc[name, "status"] == "ingested"
        assert manifest.loc[name, "sha256"] == first.loc[name, "sha256"]
        assert "changed after ingest" in manifest.loc[name, "reason"] and "refused" in summary.refused[name]
    stored = _ingested_pixels(home)
    for name, expected in pixels.items():
        np.testing.assert_array_equal(stored[name], expected, err_msg=name)
    again = _run(source, home)
    pd.testing.assert_frame_equal(read_manifest(home / "results" / "S1").set_index("source_path"), manifest)
    assert again.new == 0


def test_a_frame_refused_by_the_pixel_limit_is_ingested_when_the_limit_is_raised(
    tmp_path: Path, home: Path, prefect_api: str
) -> None:
    source = tmp_path / "src"
    source.mkdir()
    frame = RNG.integers(0, 255, (100, 120, 3), dtype=np.uint8)
    Image.fromarray(frame).save(source / "wide.png")
    _run(source, home, max_pixels=5_000)
    row = read_manifest(home / "results" / "S1").iloc[0]
    assert row["status"] == "quarantined" and "raise DEFECTFLOW_MAX_PIXELS" in row["reason"]
    unchanged = _run(source, home, max_pixels=5_000)
    assert unchanged.new == 0 and unchanged.quarantined == 1
    summary = _run(source, home, max_pixels=20_000)
    assert summary.ingested == 1 and summary.quarantined == 0
    np.testing.assert_array_equal(_ingested_pixels(home)["wide.png"], frame)


def test_folder_links_and_dangling_links_get_a_manifest_row(tmp_path: Path, home: Path, prefect_api: str) -> None:
    source = tmp_path / "src"
    (source / "cam1").mkdir(parents=True)
    Image.fromarray(RNG.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(source / "cam1" / "a.png")
    (source / "cam1-again").symlink_to("cam1", target_is_directory=True)
    (source / "cam1" / "loop").symlink_to("..", target_is_directory=True)
    (source / "gone.png").symlink_to(tmp_path / "nowhere.png")
    (source / "z-link.png").symlink_to(source / "cam1" / "a.png")
    summary = _run(source, home)
    manifest = read_manifest(home / "results" / "S1").set_index("source_path")
    assert summary.files == len(manifest) == 5
    assert manifest.loc["cam1/a.png", "status"] == "ingested"
    assert manifest.loc["z-link.png", "status"] == "duplicate"
    for name in ("cam1-again", "cam1/loop"):
        assert manifest.loc[name, "status"] == "quarantined"
        assert "symbolic link to a folder" in manifest.loc[name, "reason"]
    assert manifest.loc["gone.png", "status"] == "quarantined"
    assert "dangling symbolic link" in manifest.loc["gone.png", "reason"]
    assert _run(source, home).new == 0


def test_a_file_that_vanishes_or_changes_after_hashing_is_quarantined_and_the_batch_goes_on(tmp_path: Path) -> None:
    from tasks.hash_files import hash_files
    from tasks.ingest_frames import ingest_frames

    source = tmp_path / "src"
    source.mkdir()
    names = ["gone.png", "kept.png", "rewritten.png"]
    for name in names:
        Image.fromarray(RNG.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(source / name)
    hashed = hash_files.fn(str(source), names)
    (source / "gone.png").unlink()
    Image.fromarray(RNG.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(source / "rewritten.png")
    jobs = [{"image_id": image_id_for(h["source_path"]), **h} for h in hashed]
    rows = {r["source_path"]: r for r in ingest_frames.fn(str(source), str(tmp_path / "store.zarr"), "S1", jobs, 10**8)}
    assert rows["kept.png"]["status"] == "ingested"
    assert rows["gone.png"]["status"] == "quarantined" and rows["gone.png"]["reason"].startswith("vanished")
    assert rows["rewritten.png"]["status"] == "quarantined" and "changed while" in rows["rewritten.png"]["reason"]
    assert FrameStore(tmp_path / "store.zarr").image_ids("S1") == ["kept.png"]
    # Gone before it could be hashed: a row saying so, not a failed task.
    (source / "kept.png").unlink()
    assert hash_files.fn(str(source), ["kept.png"])[0]["unreadable"].startswith("vanished")


def _png16(path: Path, pixels: np.ndarray) -> None:
    """A 16-bit colour PNG (Pillow cannot write one), every row with another of the five PNG filters."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    height, width, channels = pixels.shape
    raw = pixels.astype(">u2").reshape(height, -1).view(np.uint8).astype(np.int32)
    bpp = 2 * channels
    rows = []
    for y in range(height):
        kind = y % 5
        line, above = raw[y], raw[y - 1] if y else np.zeros_like(raw[y])
        left = np.concatenate([np.zeros(bpp, np.int32), line[:-bpp]])
        upper_left = np.concatenate([np.zeros(bpp, np.int32), above[:-bpp]])
        if kind == 4:  # Paeth
            p = left + above - upper_left
            pa, pb, pc = abs(p - left), abs(p - above), abs(p - upper_left)
            predictor = np.where((pa <= pb) & (pa <= pc), left, np.where(pb <= pc, above, upper_left))
        else:
            predictor = [np.zeros_like(line), left, above, (left + above) // 2][kind]
        rows.append(bytes([kind]) + ((line - predictor) % 256).astype(np.uint8).tobytes())
    colour_type = {3: 2, 4: 6}[channels]
    header = struct.pack(">IIBBBBB", width, height, 16, colour_type, 0, 0, 0)
    data = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"".join(rows)))
    path.write_bytes(data + chunk(b"IEND", b""))


def test_sixteen_bit_colour_png_and_multi_page_tiff(tmp_path: Path, home: Path, prefect_api: str) -> None:
    source = tmp_path / "src"
    source.mkdir()
    rgb16 = RNG.integers(0, 65535, (21, 34, 3), dtype=np.uint16)
    rgba16 = RNG.integers(0, 65535, (21, 34, 4), dtype=np.uint16)
    _png16(source / "rgb16.png", rgb16)
    _png16(source / "rgba16.png", rgba16)
    pages = RNG.integers(0, 65535, (2, 21, 34, 3), dtype=np.uint16)
    tifffile.imwrite(source / "pages-rgb16.tif", pages)
    tifffile.imwrite(source / "pages-grey16.tif", pages[..., 0])
    _run(source, home)
    stored = _ingested_pixels(home)
    manifest = read_manifest(home / "results" / "S1").set_index("source_path")
    np.testing.assert_array_equal(stored["rgb16.png"], rgb16)
    np.testing.assert_array_equal(stored["rgba16.png"], rgba16[..., :3])
    assert stored["rgb16.png"].dtype == stored["rgba16.png"].dtype == np.uint16
    np.testing.assert_array_equal(stored["pages-rgb16.tif"], pages[0])
    np.testing.assert_array_equal(stored["pages-grey16.tif"], pages[0, ..., :1])
    assert "first of 2 pages kept" in manifest.loc["pages-rgb16.tif", "reason"]
    assert "first of 2 pages kept" in manifest.loc["pages-grey16.tif", "reason"]


def test_file_names_with_rich_markup_are_printed_as_they_are(tmp_path: Path, prefect_api: str) -> None:
    source = tmp_path / "src"
    source.mkdir()
    (source / "[bold red]loud.txt").write_text("not a frame")
    (source / "[i]talic.txt").write_text("not a frame either")
    arguments = ["ingest", str(source), "--shift", "S1", "--home", str(tmp_path / "h")]
    result = runner.invoke(app, [*arguments, "--dask-address", shared_cluster()])
    assert result.exit_code == 0, result.output
    assert "[bold red]loud.txt" in result.output and "[i]talic.txt:" in result.output


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
