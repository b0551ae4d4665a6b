"""Segmentation dataset: layout errors, mask conventions, split, augmentation, preprocessing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from models.segmentation.augmentation import AugmentConfig, JointAugment
from models.segmentation.data import SegmentationFolder, list_samples, split_train_val
from models.segmentation.preprocessing import (
    IGNORE_INDEX,
    image_to_float,
    pad_collate,
    preprocess_image,
    resized_size,
)


def _write(root: Path, name: str, image: np.ndarray, mask: np.ndarray | None, suffix: str = ".png") -> None:
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(root / "images" / f"{name}{suffix}")
    if mask is not None:
        Image.fromarray(mask).save(root / "masks" / f"{name}.png")


def _pair(height: int = 40, width: int = 60, value: int = 1) -> tuple[np.ndarray, np.ndarray]:
    image = np.zeros((height, width, 3), np.uint8)
    mask = np.zeros((height, width), np.uint8)
    image[10:30, 20:40] = 200
    mask[10:30, 20:40] = value
    return image, mask


def test_missing_directory_and_missing_mask_are_explained(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"images/<name>\.png"):
        list_samples(tmp_path / "nowhere")
    image, mask = _pair()
    _write(tmp_path, "a", image, mask)
    _write(tmp_path, "b", image, None, suffix=".jpg")
    with pytest.raises(FileNotFoundError, match=r"'b' needs .*masks/b\.png"):
        list_samples(tmp_path)


def test_mask_size_mismatch_names_the_file(tmp_path: Path) -> None:
    image, _ = _pair(40, 60)
    _, mask = _pair(20, 30)
    _write(tmp_path, "frame7", image, mask)
    with pytest.raises(ValueError, match=r"frame7\.png is 30x20 .* but image .*frame7\.png is 60x40"):
        SegmentationFolder(tmp_path)


def test_binary_mask_255_means_class_1_and_bad_values_fail(tmp_path: Path) -> None:
    image, mask = _pair(value=255)
    _write(tmp_path / "ok", "a", image, mask)
    _write(tmp_path / "ok", "b", image, mask // 255)
    dataset = SegmentationFolder(tmp_path / "ok", image_size=60)
    for index in range(2):
        _, labels = dataset[index]
        assert set(torch.unique(labels).tolist()) == {0, 1}
        assert int(labels.sum()) == 20 * 20

    bad = mask.copy()
    bad[0, 0] = 7
    _write(tmp_path / "bad", "c", image, bad)
    with pytest.raises(ValueError, match=r"c\.png holds values .*7"):
        SegmentationFolder(tmp_path / "bad")[0]


def test_items_are_resized_to_the_long_side_and_normalised(tmp_path: Path) -> None:
    image, mask = _pair(40, 60)
    _write(tmp_path, "a", image, mask)
    image_t, mask_t = SegmentationFolder(tmp_path, image_size=30)[0]
    assert tuple(image_t.shape) == (3, 20, 30) and tuple(mask_t.shape) == (20, 30)
    assert mask_t.dtype == torch.int64
    assert int(mask_t.sum()) == 10 * 10  # exact halving keeps the square exact
    assert float(image_t[:, 0, 0].mean()) < -1.5  # black is far below the ImageNet mean


def test_split_is_deterministic_and_label_fraction_keeps_val_fixed() -> None:
    names = [f"f{i:03d}" for i in range(50)]
    train, val = split_train_val(names, val_fraction=0.2, seed=3)
    assert len(val) == 10 and len(train) == 40 and not set(train) & set(val)
    assert split_train_val(list(reversed(names)), 0.2, 3) == (train, val)
    assert split_train_val(names, 0.2, 4)[1] != val
    few, val_few = split_train_val(names, 0.2, 3, label_fraction=0.1)
    assert val_few == val and len(few) == 4 and set(few) <= set(train)
    one, _ = split_train_val(names, 0.2, 3, label_fraction=0.001)
    assert len(one) == 1
    with pytest.raises(ValueError, match="at least 2"):
        split_train_val(["only"], 0.2)


def test_augmentation_moves_image_and_mask_together() -> None:
    torch.manual_seed(0)
    image = torch.zeros(3, 48, 64)
    mask = torch.zeros(48, 64, dtype=torch.int64)
    image[:, 10:30, 12:40] = 1.0
    mask[10:30, 12:40] = 1
    augment = JointAugment(AugmentConfig(brightness=0, contrast=0, saturation=0, hue=0, affine_probability=1.0))
    for _ in range(10):
        out_image, out_mask = augment(image, mask)
        assert out_mask.shape == mask.shape and out_mask.dtype == mask.dtype
        inside = out_mask == 1
        outside = out_mask == 0
        # The bright square and class 1 coincide, apart from a thin band of interpolated edge pixels.
        assert float(out_image[0][inside].mean()) > 0.8
        assert float(out_image[0][outside].mean()) < 0.2
        assert set(torch.unique(out_mask).tolist()) <= {0, 1, IGNORE_INDEX}


def test_augmentation_fill_is_ignored_and_none_is_identity() -> None:
    torch.manual_seed(0)
    image, mask = torch.rand(3, 32, 32), torch.zeros(32, 32, dtype=torch.int64)
    rotate = JointAugment(AugmentConfig(hflip=0, vflip=0, rotation_degrees=45, affine_probability=1.0))
    seen_ignore = any(bool((rotate(image, mask)[1] == IGNORE_INDEX).any()) for _ in range(5))
    assert seen_ignore
    same_image, same_mask = JointAugment(AugmentConfig.none())(image, mask)
    assert torch.equal(same_image, image) and torch.equal(same_mask, mask)


def test_preprocessing_handles_uint16_and_grey() -> None:
    grey16 = np.full((30, 40), 65535, np.uint16)
    as_float = image_to_float(grey16)
    assert tuple(as_float.shape) == (3, 30, 40) and float(as_float.min()) == 1.0
    rgb8 = np.full((30, 40, 3), 255, np.uint8)
    assert torch.allclose(preprocess_image(grey16, 20), preprocess_image(rgb8, 20))
    assert resized_size(30, 40, 20) == (15, 20)
    with pytest.raises(ValueError, match="dtype"):
        image_to_float(np.zeros((4, 4), np.int32))


def test_pad_collate_pads_to_multiple_of_16_with_ignore() -> None:
    batch = [
        (torch.ones(3, 20, 30), torch.ones(20, 30, dtype=torch.int64)),
        (torch.ones(3, 17, 33), torch.zeros(17, 33, dtype=torch.int64)),
    ]
    images, masks = pad_collate(batch)
    assert tuple(images.shape) == (2, 3, 32, 48) and tuple(masks.shape) == (2, 32, 48)
    assert int((masks[0] == IGNORE_INDEX).sum()) == 32 * 48 - 20 * 30
    assert float(images[1, :, 17:].abs().sum()) == 0.0
