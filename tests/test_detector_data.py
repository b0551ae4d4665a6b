"""MVTec-layout reading, preprocessing of crops and the validation split."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from models.detector.data import (
    load_image,
    load_mask,
    scan_mvtec,
    split_train_val,
)
from models.detector.inference import preprocess_crop, preprocess_crops
from models.imaging import IMAGENET_MEAN, IMAGENET_STD


def _write(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def _dataset(root: Path) -> Path:
    rng = np.random.default_rng(0)
    _write(root / "train/good/a.png", rng.integers(0, 255, (40, 50, 3), dtype=np.uint8))
    _write(root / "train/good/b.jpg", rng.integers(0, 255, (30, 20), dtype=np.uint8))  # grey JPEG
    _write(root / "train/good/c.bmp", rng.integers(0, 255, (33, 33, 3), dtype=np.uint8))
    _write(root / "train/good/d.tif", rng.integers(0, 65535, (25, 35), dtype=np.uint16))  # 16-bit grey
    (root / "train/good/notes.txt").write_text("not an image")
    _write(root / "test/good/g.png", rng.integers(0, 255, (40, 40, 3), dtype=np.uint8))
    _write(root / "test/crack/x.png", rng.integers(0, 255, (40, 40, 3), dtype=np.uint8))
    mask = np.zeros((40, 40), dtype=np.uint8)
    mask[10:20, 5:9] = 255
    _write(root / "ground_truth/crack/x_mask.png", mask)
    return root


def test_scan_reads_all_formats_and_pairs_masks(tmp_path: Path) -> None:
    index = scan_mvtec(_dataset(tmp_path), need_test=True)
    assert [p.name for p in index.train] == ["a.png", "b.jpg", "c.bmp", "d.tif"]
    assert [(s.defect, s.label, s.mask_path is not None) for s in index.test] == [
        ("crack", 1, True),
        ("good", 0, False),
    ]
    assert index.defect_types == ["crack"]
    for path in index.train:
        image = load_image(path, 32)
        assert image.shape == (3, 32, 32) and image.dtype == torch.float32
        assert float(image.min()) >= 0.0 and float(image.max()) <= 1.0
    grey = load_image(index.train[1], 32)
    assert torch.equal(grey[0], grey[1]) and torch.equal(grey[1], grey[2])
    sixteen = load_image(index.train[3], 32)
    assert float(sixteen.max()) > 0.5  # 16-bit values scaled by 65535, not clipped at 255
    mask = load_mask(index.test[0].mask_path, 20)
    assert mask.shape == (1, 20, 20) and set(mask.unique().tolist()) == {0.0, 1.0}
    assert float(mask.sum()) == pytest.approx(5 * 2, abs=2)


def test_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="train/good"):
        scan_mvtec(tmp_path)
    (tmp_path / "train/good").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="holds no images"):
        scan_mvtec(tmp_path)
    root = _dataset(tmp_path / "set")
    (root / "ground_truth/crack/x_mask.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"x\.png"):
        scan_mvtec(root)


def test_split_is_deterministic_and_disjoint() -> None:
    paths = [Path(f"{i:03d}.png") for i in range(50)]
    train, val = split_train_val(paths, 0.2, seed=3)
    assert len(val) == 10 and len(train) == 40 and not set(train) & set(val)
    assert split_train_val(list(reversed(paths)), 0.2, seed=3) == (train, val)
    assert split_train_val(paths, 0.2, seed=4)[1] != val
    assert split_train_val(paths, 0.0, seed=0) == (sorted(paths), [])
    with pytest.raises(ValueError):
        split_train_val(paths, 0.95, seed=0)


def test_preprocess_crops_of_any_dtype_and_layout() -> None:
    rng = np.random.default_rng(0)
    crops = [
        rng.integers(0, 255, (37, 51, 3), dtype=np.uint8),
        rng.integers(0, 65535, (80, 20), dtype=np.uint16),
        rng.integers(0, 255, (10, 12, 1), dtype=np.uint8),
    ]
    batch = preprocess_crops(crops, 64)
    assert batch.shape == (3, 3, 64, 64) and batch.dtype == torch.float32
    white = preprocess_crop(np.full((5, 5), 65535, dtype=np.uint16), 32)
    expected = (1 - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD)
    assert torch.allclose(white[:, 0, 0], expected, atol=1e-5)
    with pytest.raises(ValueError):
        preprocess_crop(np.zeros((4, 4, 2), dtype=np.uint8), 32)
