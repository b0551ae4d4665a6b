"""A frame reaches a model as the same pixels through the ingest and through the training loaders (issue #12)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from models.detector.data import read_image_array
from models.imaging import ImageRejected, read_image, to_rgb, to_unit_float
from models.segmentation.data import SegmentationFolder
from models.segmentation.preprocessing import image_to_float
from storage.frame_store import FrameStore
from tasks.ingest_frames import ingest_frames
from tests.test_ingest import _exif_rotated_jpeg
from tests.test_ingest_integrity import _png16

RNG = np.random.default_rng(7)


@pytest.fixture(scope="module")
def frames(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Frames whose decoding has rules: an EXIF-rotated JPEG, a 16-bit colour PNG, a palette PNG."""
    root = tmp_path_factory.mktemp("imaging") / "images"
    root.mkdir()
    _exif_rotated_jpeg(root / "rotated.jpg")
    _png16(root / "rgb16.png", RNG.integers(0, 65535, (21, 34, 3), dtype=np.uint16))
    palette = Image.fromarray(RNG.integers(0, 255, (24, 30, 3), dtype=np.uint8)).convert("P")
    palette.save(root / "palette.png")
    return root


def _ingested(frames: Path, store_path: Path) -> dict[str, np.ndarray]:
    """Every frame through the ingest's own task code, read back from the zarr store."""
    from storage.frame_files import sha256_of

    names = sorted(p.name for p in frames.iterdir())
    jobs = [{"image_id": n, "source_path": n, "sha256": sha256_of(frames / n), "bytes": 0} for n in names]
    store = FrameStore(store_path)
    store.ensure_shift("S1")
    rows = ingest_frames.fn(str(frames), str(store_path), "S1", jobs, 10**8)
    assert [row["status"] for row in rows] == ["ingested"] * len(names)
    return {n: store.read_image("S1", n) for n in names}


def test_training_loaders_see_the_pixels_the_ingest_stores(frames: Path, tmp_path: Path) -> None:
    stored = _ingested(frames, tmp_path / "store.zarr")
    assert stored["rotated.jpg"].shape == (64, 40, 3)  # EXIF orientation applied
    assert stored["rgb16.png"].dtype == np.uint16  # all 16 bits kept
    for name, pixels in stored.items():
        np.testing.assert_array_equal(read_image(frames / name), pixels)
        # the detector's and the segmenter's loaders, scaled to [0, 1] the same way
        expected = to_rgb(to_unit_float(pixels))
        np.testing.assert_array_equal(read_image_array(frames / name), expected)
        np.testing.assert_array_equal(image_to_float(read_image(frames / name)).numpy().transpose(1, 2, 0), expected)


def test_the_segmentation_folder_reads_rotated_frames_upright(frames: Path, tmp_path: Path) -> None:
    root = tmp_path / "seg"
    (root / "masks").mkdir(parents=True)
    (root / "images").mkdir()
    _exif_rotated_jpeg(root / "images" / "rotated.jpg")
    Image.fromarray(np.zeros((64, 40), np.uint8)).save(root / "masks" / "rotated.png")  # drawn on the upright frame
    folder = SegmentationFolder(root, 64, augment=None)
    image, mask = folder[0]
    assert tuple(image.shape) == (3, 64, 40) and tuple(mask.shape) == (64, 40)
    assert torch.isfinite(image).all()


def test_an_unreadable_training_image_names_the_file(tmp_path: Path) -> None:
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 20)
    with pytest.raises(ImageRejected, match=r"broken\.png"):
        read_image(broken)
