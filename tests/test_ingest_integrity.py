"""Ingest keeps every frame whatever happens between and during runs: folded names, changed, vanished and linked
sources, raised limits, 16-bit sources, printed names (issue #11).

These tests run the real ``ingest_shift`` flow on a real Dask ``LocalCluster`` against a real Prefect API.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import tifffile
from PIL import Image
from typer.testing import CliRunner

from flows.cli import app
from storage.frame_store import FrameStore
from storage.ids import image_id_for
from storage.tables import read_manifest
from tests.pipeline import ingest as _run
from tests.pipeline import shared_cluster

RNG = np.random.default_rng(7)
runner = CliRunner()


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
