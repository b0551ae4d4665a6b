"""Image and mask preprocessing shared by training, evaluation and inference.

One path from a camera array to a network input, so that training and scoring see identical pixels:

0. files are read by :func:`models.imaging.read_image`, exactly as the ingest decodes frames;
1. :func:`image_to_float`: uint8 / 255, uint16 / 65535, greyscale repeated to 3 channels, alpha dropped;
2. :func:`resize_image`: bilinear with antialiasing so that the long side equals ``long_side`` (aspect ratio
   kept, each side rounded to the nearest pixel); masks use nearest neighbour (:func:`resize_mask`);
3. :func:`models.imaging.imagenet_normalise`: ImageNet mean and standard deviation (the encoder's statistics,
   pretrained or not);
4. padding to a multiple of 16 happens inside the network (or in :func:`pad_collate` for batches).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from models.imaging import imagenet_normalise, to_rgb, to_unit_float

#: Label of pixels that count neither in the loss nor in the metrics (padding, rotation fill).
IGNORE_INDEX = 255
#: Inputs are padded to a multiple of this (the network's output stride).
SIZE_MULTIPLE = 16


def image_to_float(image: np.ndarray) -> torch.Tensor:
    """Convert a camera array to a ``(3, H, W)`` float32 tensor in [0, 1].

    Args:
        image: ``(H, W)`` or ``(H, W, 1)`` greyscale, ``(H, W, 3)`` RGB or ``(H, W, 4)`` RGBA; uint8 (divided
            by 255), uint16 (divided by 65535, the full 16-bit range rather than the frame's own maximum, so
            that exposure differences are kept) or float already in [0, 1].

    Raises:
        ValueError: For other shapes or dtypes.
    """
    scaled = to_rgb(to_unit_float(np.asarray(image)))
    return torch.from_numpy(np.ascontiguousarray(scaled.transpose(2, 0, 1)))


def resized_size(height: int, width: int, long_side: int) -> tuple[int, int]:
    """Size with the long side equal to ``long_side`` and the aspect ratio kept (rounded, at least 1)."""
    if long_side < 1:
        raise ValueError(f"long_side must be positive, got {long_side}")
    scale = long_side / max(height, width)
    return max(1, round(height * scale)), max(1, round(width * scale))


def resize_image(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize of ``(3, H, W)`` or ``(N, 3, H, W)`` images, antialiased when shrinking."""
    if tuple(image.shape[-2:]) == tuple(size):
        return image
    batched = image if image.ndim == 4 else image[None]
    out = F.interpolate(batched, size=size, mode="bilinear", align_corners=False, antialias=True)
    return out if image.ndim == 4 else out[0]


def resize_mask(mask: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Nearest-neighbour resize (pixel-centre sampling) of an ``(H, W)`` label map."""
    if tuple(mask.shape[-2:]) == tuple(size):
        return mask
    resized = F.interpolate(mask[None, None].float(), size=size, mode="nearest-exact")
    return resized[0, 0].to(mask.dtype)


def preprocess_image(image: np.ndarray, long_side: int) -> torch.Tensor:
    """Camera array to a normalised ``(3, h, w)`` network input with long side ``long_side`` (unpadded)."""
    tensor = image_to_float(image)
    return imagenet_normalise(resize_image(tensor, resized_size(tensor.shape[1], tensor.shape[2], long_side)))


def padded_size(height: int, width: int, multiple: int = SIZE_MULTIPLE) -> tuple[int, int]:
    """Smallest size at least ``(height, width)`` whose sides are multiples of ``multiple``."""
    return height + (-height) % multiple, width + (-width) % multiple


def pad_collate(
    batch: Sequence[tuple[torch.Tensor, torch.Tensor]],
) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack ``(image, mask)`` pairs of possibly different sizes into one padded batch.

    Images are zero-padded (the ImageNet mean after normalisation) at the bottom and right to the largest size
    in the batch, rounded up to a multiple of 16; masks are padded with :data:`IGNORE_INDEX` so the padding
    counts neither in the loss nor in the metrics.
    """
    height = max(image.shape[-2] for image, _ in batch)
    width = max(image.shape[-1] for image, _ in batch)
    height, width = padded_size(height, width)
    images = torch.zeros(len(batch), 3, height, width, dtype=batch[0][0].dtype)
    masks = torch.full((len(batch), height, width), IGNORE_INDEX, dtype=torch.int64)
    for i, (image, mask) in enumerate(batch):
        h, w = image.shape[-2:]
        images[i, :, :h, :w] = image
        masks[i, :h, :w] = mask
    return images, masks
