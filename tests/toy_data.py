"""A tiny generated MVTec-layout dataset for tests and smoke runs (no files needed beside the repository).

Normal images: a grey square object with a smooth, randomly oriented sinusoidal texture on a darker
background, with small random shifts and brightness changes. Defective images: the same with a bright blob on
the object; the blob is the ground-truth mask.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def toy_image(rng: np.random.Generator, size: int, defect: bool) -> tuple[np.ndarray, np.ndarray]:
    """One ``(size, size, 3)`` uint8 image and its ``(size, size)`` boolean mask."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    image = np.full((size, size), 0.15, dtype=np.float32)
    half = rng.uniform(0.3, 0.34)
    cy, cx = 0.5 + rng.uniform(-0.04, 0.04, size=2)
    inside = (np.abs(yy - cy) < half) & (np.abs(xx - cx) < half)
    angle = rng.uniform(0, np.pi)
    frequency = rng.uniform(10, 14)
    texture = 0.5 + 0.1 * np.sin(2 * np.pi * frequency * (np.cos(angle) * xx + np.sin(angle) * yy))
    image[inside] = texture[inside] * rng.uniform(0.9, 1.1)
    image += rng.normal(0, 0.01, size=image.shape).astype(np.float32)
    mask = np.zeros((size, size), dtype=bool)
    if defect:
        radius = rng.uniform(0.05, 0.09)
        by = cy + rng.uniform(-half + radius, half - radius)
        bx = cx + rng.uniform(-half + radius, half - radius)
        mask = (yy - by) ** 2 + (xx - bx) ** 2 < radius**2
        image[mask] = rng.uniform(0.9, 1.0)
    rgb = np.repeat(np.clip(image, 0, 1)[:, :, None], 3, axis=2)
    return (rgb * 255).round().astype(np.uint8), mask


def make_toy_dataset(
    root: str | Path, n_train: int = 24, n_test_good: int = 8, n_test_defect: int = 8, size: int = 64, seed: int = 0
) -> Path:
    """Write ``root/train/good``, ``root/test/{good,blob}`` and ``root/ground_truth/blob`` PNGs; return ``root``."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    folders = {
        "train": root / "train" / "good",
        "good": root / "test" / "good",
        "blob": root / "test" / "blob",
        "mask": root / "ground_truth" / "blob",
    }
    for folder in folders.values():
        folder.mkdir(parents=True, exist_ok=True)
    for i in range(n_train):
        Image.fromarray(toy_image(rng, size, False)[0]).save(folders["train"] / f"{i:03d}.png")
    for i in range(n_test_good):
        Image.fromarray(toy_image(rng, size, False)[0]).save(folders["good"] / f"{i:03d}.png")
    for i in range(n_test_defect):
        image, mask = toy_image(rng, size, True)
        Image.fromarray(image).save(folders["blob"] / f"{i:03d}.png")
        Image.fromarray((mask * 255).astype(np.uint8)).save(folders["mask"] / f"{i:03d}_mask.png")
    return root
