"""Folder-of-images segmentation dataset and its deterministic train/validation split.

Layout::

    DIR/images/<name>.<png|jpg|jpeg|bmp|tif|tiff>
    DIR/masks/<name>.png        # 0 background, k class k; in a binary mask 255 also means class 1

Every image needs a mask of the same size. Samples are resized so the long side equals ``image_size``
(bilinear + antialias for images, nearest for masks), optionally augmented, ImageNet-normalised; they are not
padded here — :func:`~models.segmentation.preprocessing.pad_collate` pads each batch to a multiple of 16.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from models.imaging import IMAGE_SUFFIXES, imagenet_normalise, read_image
from models.segmentation.augmentation import AugmentConfig, JointAugment
from models.segmentation.preprocessing import image_to_float, resize_image, resize_mask, resized_size

IMAGES_DIR = "images"
MASKS_DIR = "masks"


def _image_size_of(path: Path) -> tuple[int, int]:
    """``(height, width)`` as decoded (EXIF orientation applied), from the file header where it can be."""
    try:
        with Image.open(path) as image:
            width, height = image.size
            transposed = image.getexif().get(0x0112, 1) in (5, 6, 7, 8)  # rotated by 90 degrees
            return (width, height) if transposed else (height, width)
    except Exception:  # PIL cannot read every TIFF header; decode instead
        array = read_image(path)
        return int(array.shape[0]), int(array.shape[1])


def list_samples(root: str | Path) -> dict[str, tuple[Path, Path]]:
    """Pair every image of ``root/images`` with its mask in ``root/masks``.

    Returns:
        ``{name: (image_path, mask_path)}`` sorted by name.

    Raises:
        FileNotFoundError: When ``root``, ``root/images`` or ``root/masks`` is missing, or an image has no mask.
        ValueError: When no image is found or two images share a name.
    """
    root = Path(root)
    images_dir, masks_dir = root / IMAGES_DIR, root / MASKS_DIR
    for directory in (root, images_dir, masks_dir):
        if not directory.is_dir():
            raise FileNotFoundError(
                f"{directory} does not exist. A segmentation dataset is a directory with images/<name>.png "
                "(or .jpg/.jpeg/.bmp/.tif/.tiff) and masks/<name>.png; generate one with synth or point to "
                "the right directory."
            )
    samples: dict[str, tuple[Path, Path]] = {}
    for path in sorted(images_dir.iterdir()):
        if not path.is_file() or path.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        if path.stem in samples:
            raise ValueError(
                f"two images are named {path.stem!r} ({samples[path.stem][0].name} and {path.name}); "
                "rename one so each image has its own masks/<name>.png"
            )
        samples[path.stem] = (path, masks_dir / f"{path.stem}.png")
    if not samples:
        raise ValueError(f"{images_dir} holds no images with suffix {', '.join(IMAGE_SUFFIXES)}")
    missing = [name for name, (_, mask) in samples.items() if not mask.is_file()]
    if missing:
        raise FileNotFoundError(
            f"{len(missing)} image(s) in {images_dir} have no mask, e.g. {missing[0]!r} needs "
            f"{masks_dir / (missing[0] + '.png')}. Add the masks, or move those images out of the dataset."
        )
    return dict(sorted(samples.items()))


def split_train_val(
    names: Sequence[str], val_fraction: float = 0.2, seed: int = 0, label_fraction: float = 1.0
) -> tuple[list[str], list[str]]:
    """Deterministic split of sample names into training and validation sets.

    The validation set depends only on the names, ``val_fraction`` and ``seed`` — never on ``label_fraction`` —
    so runs with fewer labels are judged on the same held-out frames.

    Args:
        names: Sample names (order does not matter; they are sorted first).
        val_fraction: Fraction held out for validation, rounded, at least 1.
        seed: Seed of the permutation.
        label_fraction: Fraction of the remaining training names kept (at least 1): simulates having masks
            for only part of the frames.

    Returns:
        ``(train_names, val_names)``, each sorted.
    """
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    if not 0 < label_fraction <= 1:
        raise ValueError(f"label_fraction must be in (0, 1], got {label_fraction}")
    ordered = sorted(names)
    if len(ordered) < 2:
        raise ValueError(f"need at least 2 samples to hold one out for validation, got {len(ordered)}")
    rng = np.random.default_rng(seed)
    permuted = [ordered[i] for i in rng.permutation(len(ordered))]
    num_val = min(max(1, round(val_fraction * len(ordered))), len(ordered) - 1)
    val, train = permuted[:num_val], permuted[num_val:]
    num_labelled = max(1, math.floor(label_fraction * len(train) + 0.5))
    train = [train[i] for i in np.random.default_rng(seed + 1).permutation(len(train))[:num_labelled]]
    return sorted(train), sorted(val)


class SegmentationFolder(Dataset):
    """Images and masks from a folder, resized to ``image_size`` on the long side.

    Items are ``(image, mask)``: a ``(3, h, w)`` ImageNet-normalised float32 tensor and an ``(h, w)`` int64
    label tensor with ``max(h, w) == image_size``.

    Args:
        root: Dataset directory (see the module docstring for the layout).
        image_size: Long side of the samples in pixels.
        names: Subset of sample names to use (default: all).
        augment: Augmentation for training (an :class:`AugmentConfig` or a ready :class:`JointAugment`);
            ``None`` for evaluation.
        num_classes: Number of classes; mask values must be below it (255 is read as 1 when it is 2).
        cache: Keep the resized, un-augmented samples in memory (float16) after the first read.

    Raises:
        FileNotFoundError: Missing directories, images without masks, or unknown ``names``.
        ValueError: A mask whose size differs from its image's.
    """

    def __init__(
        self,
        root: str | Path,
        image_size: int = 256,
        names: Sequence[str] | None = None,
        augment: AugmentConfig | JointAugment | None = None,
        num_classes: int = 2,
        cache: bool = True,
    ) -> None:
        self.root = Path(root)
        available = list_samples(self.root)
        if names is None:
            names = list(available)
        unknown = [n for n in names if n not in available]
        if unknown:
            raise FileNotFoundError(
                f"{len(unknown)} requested sample(s) are not in {self.root / IMAGES_DIR}, e.g. {unknown[0]!r}"
            )
        self.names = list(names)
        self.samples = [available[n] for n in self.names]
        for image_path, mask_path in self.samples:
            image_hw, mask_hw = _image_size_of(image_path), _image_size_of(mask_path)
            if image_hw != mask_hw:
                raise ValueError(
                    f"mask {mask_path} is {mask_hw[1]}x{mask_hw[0]} (WxH) but image {image_path} is "
                    f"{image_hw[1]}x{image_hw[0]}; masks must have their image's size. Regenerate the mask, or "
                    "resize it with nearest-neighbour interpolation."
                )
        self.image_size = int(image_size)
        self.num_classes = int(num_classes)
        self.augment = JointAugment(augment) if isinstance(augment, AugmentConfig) else augment
        self.cache = cache
        self._cached: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def __len__(self) -> int:
        return len(self.samples)

    def read_mask(self, index: int) -> np.ndarray:
        """The full-resolution label map of sample ``index``, validated, as int64."""
        mask_path = self.samples[index][1]
        mask = read_image(mask_path)
        if mask.ndim == 3:
            if not all(np.array_equal(mask[..., 0], mask[..., c]) for c in range(1, min(mask.shape[2], 3))):
                raise ValueError(
                    f"mask {mask_path} has colour channels that differ; save masks as single-channel PNGs "
                    "with the class index in each pixel"
                )
            mask = mask[..., 0]
        labels = mask.astype(np.int64)
        if self.num_classes == 2:
            labels[labels == 255] = 1
        if labels.min() < 0 or labels.max() >= self.num_classes:
            values = np.unique(labels)
            raise ValueError(
                f"mask {mask_path} holds values {values[:10].tolist()}, but only 0..{self.num_classes - 1} are "
                f"classes (num_classes={self.num_classes}; 255 means 1 in a binary mask). Fix the mask or the "
                "number of classes."
            )
        return labels

    def _load(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        if index in self._cached:
            image, mask = self._cached[index]
            return image.float(), mask.long()
        image = image_to_float(read_image(self.samples[index][0]))
        mask = torch.from_numpy(self.read_mask(index))
        size = resized_size(image.shape[1], image.shape[2], self.image_size)
        image, mask = resize_image(image, size), resize_mask(mask, size)
        if self.cache:
            self._cached[index] = (image.half(), mask.to(torch.uint8 if self.num_classes <= 255 else torch.int64))
        return image, mask

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image, mask = self._load(index)
        if self.augment is not None:
            image, mask = self.augment(image, mask)
        return imagenet_normalise(image), mask.long()
