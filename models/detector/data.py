"""Reading MVTec AD style folders and turning images into network input.

Layout (the convention anomaly-detection tools read)::

    DATA/train/good/*.png                     normal training images
    DATA/test/good/*.png                      normal test images
    DATA/test/<defect>/*.png                  defective test images
    DATA/ground_truth/<defect>/<stem>_mask.png  binary masks (non-zero = defect) for every defective test image

Images may be of any size, grey or RGB (RGBA and palette images are converted), 8 or 16 bit, stored as png,
jpg, bmp or tif. Every image is resized to the square network input (bilinear with antialiasing; masks nearest
neighbour, then binarised) and normalised with the ImageNet mean and standard deviation, which is what timm's
ResNets expect (pretrained or not, the teacher sees the same value range).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.nn import functional as F

from models.imaging import IMAGE_SUFFIXES, imagenet_normalise, read_image, to_rgb, to_unit_float

GOOD = "good"


def list_images(folder: str | Path) -> list[Path]:
    """Image files directly in ``folder`` (by suffix, case-insensitive), sorted by name."""
    folder = Path(folder)
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def read_image_array(path: str | Path) -> np.ndarray:
    """Read an image file as ``(H, W, 3)`` float32 in ``[0, 1]``, decoded as the ingest decodes frames."""
    return to_rgb(to_unit_float(read_image(path)))


def resize_tensor(images: torch.Tensor, image_size: int, mode: str = "bilinear") -> torch.Tensor:
    """Resize ``(C, H, W)`` or ``(N, C, H, W)`` to ``image_size x image_size`` (antialiased when bilinear)."""
    batched = images.ndim == 4
    x = images if batched else images[None]
    if tuple(x.shape[-2:]) != (image_size, image_size):
        if mode == "nearest":
            x = F.interpolate(x, size=(image_size, image_size), mode="nearest")
        else:
            x = F.interpolate(x, size=(image_size, image_size), mode="bilinear", align_corners=False, antialias=True)
    return x if batched else x[0]


def array_to_tensor(array: np.ndarray, image_size: int) -> torch.Tensor:
    """``(H, W, 3)`` float array in ``[0, 1]`` → resized ``(3, S, S)`` float tensor in ``[0, 1]``."""
    tensor = torch.from_numpy(np.ascontiguousarray(array)).permute(2, 0, 1).float()
    return resize_tensor(tensor, image_size).clamp_(0.0, 1.0)


def load_image(path: str | Path, image_size: int) -> torch.Tensor:
    """Image file → ``(3, S, S)`` float tensor in ``[0, 1]`` (not yet normalised)."""
    return array_to_tensor(read_image_array(path), image_size)


def load_mask(path: str | Path, image_size: int) -> torch.Tensor:
    """Mask file → ``(1, S, S)`` float tensor of 0/1 (nearest-neighbour resize, non-zero = defect)."""
    with Image.open(path) as image:
        array = np.asarray(image.convert("L")) > 0
    tensor = torch.from_numpy(array.astype(np.float32))[None]
    return (resize_tensor(tensor, image_size, mode="nearest") > 0.5).float()


@dataclass(frozen=True)
class Sample:
    """One test image.

    Attributes:
        path: Image file.
        defect: ``"good"`` or the defect folder name.
        mask_path: Ground-truth mask (``None`` for good images).
    """

    path: Path
    defect: str
    mask_path: Path | None = None

    @property
    def label(self) -> int:
        """1 for defective, 0 for good."""
        return int(self.defect != GOOD)

    @property
    def name(self) -> str:
        """``<defect>/<file name>``, unique within a dataset."""
        return f"{self.defect}/{self.path.name}"


@dataclass
class MVTecIndex:
    """The files of an MVTec-layout folder.

    Attributes:
        root: The folder.
        train: Normal training images (``train/good``).
        test: Test images with their defect type and mask.
    """

    root: Path
    train: list[Path] = field(default_factory=list)
    test: list[Sample] = field(default_factory=list)

    @property
    def defect_types(self) -> list[str]:
        """Defect folder names present in ``test`` (sorted, without ``good``)."""
        return sorted({s.defect for s in self.test if s.defect != GOOD})


def _mask_for(root: Path, defect: str, image: Path) -> Path:
    folder = root / "ground_truth" / defect
    candidates = [folder / f"{image.stem}_mask{suffix}" for suffix in (".png", image.suffix, ".bmp", ".tif")]
    candidates.append(folder / f"{image.stem}{image.suffix}")
    candidates.append(folder / f"{image.stem}.png")
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        f"no ground-truth mask for defective test image {image} (looked for {candidates[0]}). Every image in "
        f"test/{defect}/ needs ground_truth/{defect}/<stem>_mask.png; remove the image or add its mask."
    )


def scan_mvtec(root: str | Path, need_train: bool = True, need_test: bool = False) -> MVTecIndex:
    """List the images of an MVTec-layout folder and pair defective test images with their masks.

    Args:
        root: Dataset folder (holding ``train/`` and/or ``test/``).
        need_train: ``train/good`` must exist and hold images.
        need_test: ``test/`` must exist and hold images.

    Raises:
        FileNotFoundError: A required folder is missing or empty, or a defective image has no mask.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"dataset folder {root} does not exist; pass a folder in the MVTec AD layout.")
    index = MVTecIndex(root=root)
    train_dir = root / "train" / GOOD
    if train_dir.is_dir():
        index.train = list_images(train_dir)
    if need_train and not train_dir.is_dir():
        raise FileNotFoundError(
            f"{root} has no train/good folder. The detector trains on normal images in {train_dir} "
            "(MVTec AD layout: train/good, test/<defect>, ground_truth/<defect>)."
        )
    if need_train and not index.train:
        raise FileNotFoundError(
            f"{train_dir} holds no images (looked for {', '.join(sorted(IMAGE_SUFFIXES))}); add normal images."
        )
    test_dir = root / "test"
    if test_dir.is_dir():
        for folder in sorted(p for p in test_dir.iterdir() if p.is_dir()):
            for image in list_images(folder):
                mask = None if folder.name == GOOD else _mask_for(root, folder.name, image)
                index.test.append(Sample(path=image, defect=folder.name, mask_path=mask))
    if need_test and not index.test:
        raise FileNotFoundError(
            f"{test_dir} holds no test images; evaluation needs test/good and test/<defect> folders with images."
        )
    return index


def split_train_val(paths: list[Path], val_fraction: float, seed: int) -> tuple[list[Path], list[Path]]:
    """Deterministic held-out split of the normal training images.

    The names are sorted, shuffled with ``numpy.random.default_rng(seed)`` and the first
    ``max(1, round(val_fraction * n))`` become the validation set (used for validation loss and for
    calibrating thresholds on images the student never saw). ``val_fraction == 0`` gives no validation set.

    Raises:
        ValueError: For a fraction outside ``[0, 0.9]`` or too few images to split.
    """
    if not 0.0 <= val_fraction <= 0.9:
        raise ValueError(f"val_fraction must be in [0, 0.9], got {val_fraction}")
    ordered = sorted(paths, key=lambda p: p.name)
    if val_fraction == 0.0:
        return ordered, []
    if len(ordered) < 2:
        raise ValueError(f"need at least 2 normal images to hold some out for validation, got {len(ordered)}")
    count = min(max(1, round(val_fraction * len(ordered))), len(ordered) - 1)
    order = np.random.default_rng(seed).permutation(len(ordered))
    val_ids = set(order[:count].tolist())
    train = [p for i, p in enumerate(ordered) if i not in val_ids]
    val = [p for i, p in enumerate(ordered) if i in val_ids]
    return train, val


def load_images_uint8(paths: list[Path], image_size: int) -> torch.Tensor:
    """Load and resize images into one ``(N, 3, S, S)`` uint8 tensor (compact in-memory cache for training)."""
    out = torch.empty((len(paths), 3, image_size, image_size), dtype=torch.uint8)
    for i, path in enumerate(paths):
        out[i] = (load_image(path, image_size) * 255.0).round_().to(torch.uint8)
    return out


def uint8_to_input(images: torch.Tensor) -> torch.Tensor:
    """Cached uint8 ``(N, 3, S, S)`` → normalised float network input."""
    return imagenet_normalise(images.float() / 255.0)
