"""Synthetic anomalies pasted into normal images, to fit the anomaly-map fusion weights without real defects.

Two recipes from the literature, both needing nothing but normal images:

* **Perlin (DRAEM, Zavrtanik et al., ICCV 2021)**: a mask made by thresholding Perlin noise at a random scale
  gives irregular blobs of varied size; inside the mask the image is blended with a foreign texture with a
  random opacity. DRAEM takes textures from the DTD dataset; we have no external data, so the texture is either
  another normal image, transformed (flipped, rotated by a multiple of 90 degrees, brightness/contrast
  changed), or a generated noise texture (smooth random colour noise).
* **CutPaste (Li et al., CVPR 2021)**: a rectangle cut from another normal image (or, in the "scar" variant, a
  thin long strip), colour-jittered and pasted at a random place.

Images are ``(3, H, W)`` float tensors in ``[0, 1]`` (before ImageNet normalisation); every function returns
``(image, mask)`` with ``mask`` of shape ``(1, H, W)`` holding 0/1. All randomness comes from a
``numpy.random.Generator`` so results are reproducible from a seed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


def perlin_noise(shape: tuple[int, int], resolution: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """2-D Perlin (gradient) noise of ``shape`` with ``resolution`` lattice cells per axis, roughly in [-1, 1].

    Args:
        shape: ``(H, W)`` of the output.
        resolution: Number of lattice cells along each axis (larger → finer blobs).
        rng: Random generator.
    """
    height, width = shape
    cells_y, cells_x = max(1, int(resolution[0])), max(1, int(resolution[1]))
    angles = rng.uniform(0.0, 2.0 * np.pi, size=(cells_y + 1, cells_x + 1))
    gradients = np.stack([np.cos(angles), np.sin(angles)], axis=-1)
    y = np.arange(height) * cells_y / height
    x = np.arange(width) * cells_x / width
    iy = np.floor(y).astype(np.int64)
    ix = np.floor(x).astype(np.int64)
    fy = (y - iy)[:, None]
    fx = (x - ix)[None, :]

    def corner(dy: int, dx: int) -> np.ndarray:
        g = gradients[(iy + dy)[:, None], (ix + dx)[None, :]]
        return g[..., 0] * (fy - dy) + g[..., 1] * (fx - dx)

    def fade(t: np.ndarray) -> np.ndarray:
        return t * t * t * (t * (t * 6.0 - 15.0) + 10.0)

    wy, wx = fade(fy), fade(fx)
    top = corner(0, 0) * (1 - wx) + corner(0, 1) * wx
    bottom = corner(1, 0) * (1 - wx) + corner(1, 1) * wx
    return (np.sqrt(2.0) * (top * (1 - wy) + bottom * wy)).astype(np.float32)


def perlin_mask(
    shape: tuple[int, int],
    rng: np.random.Generator,
    scale_exponents: tuple[int, int] = (1, 4),
    threshold: float = 0.5,
    min_fraction: float = 0.002,
    max_fraction: float = 0.25,
    attempts: int = 20,
) -> np.ndarray:
    """Binary blob mask from thresholded Perlin noise (DRAEM).

    Args:
        shape: ``(H, W)``.
        rng: Random generator.
        scale_exponents: Inclusive range of ``k`` for ``2**k`` lattice cells per axis (drawn per axis).
        threshold: Noise level above which a pixel is anomalous.
        min_fraction: Masks covering less of the image are redrawn.
        max_fraction: Masks covering more of the image are redrawn.
        attempts: Redraws before falling back to the best-sized one.
    """
    best = None
    for _ in range(attempts):
        resolution = (
            2 ** int(rng.integers(scale_exponents[0], scale_exponents[1] + 1)),
            2 ** int(rng.integers(scale_exponents[0], scale_exponents[1] + 1)),
        )
        mask = perlin_noise(shape, resolution, rng) > threshold
        fraction = mask.mean()
        if min_fraction <= fraction <= max_fraction:
            return mask
        if fraction > 0 and (best is None or abs(fraction - 0.05) < abs(best.mean() - 0.05)):
            best = mask
    if best is None:  # pathological: place a small disc so a mask is always returned
        best = np.zeros(shape, dtype=bool)
        cy, cx = int(rng.integers(0, shape[0])), int(rng.integers(0, shape[1]))
        radius = max(2, min(shape) // 12)
        yy, xx = np.ogrid[: shape[0], : shape[1]]
        best[(yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2] = True
    return best


def noise_texture(shape: tuple[int, int], rng: np.random.Generator) -> torch.Tensor:
    """Smooth random colour texture ``(3, H, W)`` in ``[0, 1]`` (Perlin noise per channel, random contrast)."""
    resolution = (2 ** int(rng.integers(2, 6)), 2 ** int(rng.integers(2, 6)))
    channels = [perlin_noise(shape, resolution, rng) for _ in range(3)]
    base = rng.uniform(0.0, 1.0, size=(3, 1, 1)).astype(np.float32)
    contrast = np.float32(rng.uniform(0.2, 0.8))
    texture = np.clip(base + contrast * np.stack(channels), 0.0, 1.0)
    return torch.from_numpy(texture)


def jitter(image: torch.Tensor, rng: np.random.Generator, strength: float = 0.3) -> torch.Tensor:
    """Random brightness, contrast and per-channel gain change of a ``(3, H, W)`` image in ``[0, 1]``."""
    brightness = float(rng.uniform(-strength, strength))
    contrast = float(rng.uniform(1 - strength, 1 + strength))
    gains = torch.from_numpy(rng.uniform(1 - strength / 2, 1 + strength / 2, size=(3, 1, 1)).astype(np.float32))
    mean = image.mean()
    return ((image - mean) * contrast + mean + brightness).mul(gains).clamp(0.0, 1.0)


def transformed_source(source: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """Another normal image made foreign: random flips, rotation by k*90 degrees and colour jitter."""
    out = source
    if rng.random() < 0.5:
        out = out.flip(-1)
    if rng.random() < 0.5:
        out = out.flip(-2)
    if out.shape[-1] == out.shape[-2]:
        out = torch.rot90(out, int(rng.integers(0, 4)), dims=(-2, -1))
    return jitter(out, rng, strength=0.4)


@dataclass
class SynthesisConfig:
    """Mix of anomaly recipes.

    Attributes:
        perlin_probability: Chance of a Perlin-mask anomaly (else CutPaste).
        noise_texture_probability: Within Perlin anomalies, chance of a generated texture (else another image).
        scar_probability: Within CutPaste anomalies, chance of the thin "scar" strip.
        opacity: Range of the blending opacity of the foreign content inside the mask.
        patch_area: Range of the CutPaste rectangle area as a fraction of the image.
        patch_aspect: Range of the rectangle aspect ratio (sampled log-uniformly).
        min_visible_change: Pixels whose intensity changes by less than this (mean over channels) are removed
            from the mask, so that the label marks visible change only.
    """

    perlin_probability: float = 0.5
    noise_texture_probability: float = 0.5
    scar_probability: float = 0.3
    opacity: tuple[float, float] = (0.5, 1.0)
    patch_area: tuple[float, float] = (0.01, 0.1)
    patch_aspect: tuple[float, float] = (0.3, 3.3)
    min_visible_change: float = 0.02


class AnomalySynthesizer:
    """Paste synthetic anomalies into normal images.

    Args:
        sources: Normal images ``(M, 3, H, W)`` in ``[0, 1]`` (float or uint8) to take foreign content from.
        config: Recipe mix.
        seed: Seed of the internal generator (ignored when ``rng`` is given to :meth:`__call__`).
    """

    def __init__(self, sources: torch.Tensor, config: SynthesisConfig | None = None, seed: int = 0) -> None:
        if sources.ndim != 4 or sources.shape[0] == 0 or sources.shape[1] != 3:
            raise ValueError(f"sources must be a non-empty (M, 3, H, W) batch of normal images, got {sources.shape}")
        self.sources = sources
        self.config = config or SynthesisConfig()
        self.rng = np.random.default_rng(seed)

    def _source(self, rng: np.random.Generator, shape: tuple[int, int]) -> torch.Tensor:
        source = self.sources[int(rng.integers(0, self.sources.shape[0]))]
        source = source.float() / 255.0 if source.dtype == torch.uint8 else source.float()
        if tuple(source.shape[-2:]) != shape:
            source = torch.nn.functional.interpolate(source[None], size=shape, mode="bilinear", align_corners=False)[0]
        return source

    def perlin(self, image: torch.Tensor, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """DRAEM-style anomaly: Perlin blob mask filled with a foreign texture at random opacity."""
        shape = (image.shape[-2], image.shape[-1])
        mask = torch.from_numpy(perlin_mask(shape, rng).astype(np.float32))[None]
        if rng.random() < self.config.noise_texture_probability:
            texture = noise_texture(shape, rng)
        else:
            texture = transformed_source(self._source(rng, shape), rng)
        opacity = float(rng.uniform(*self.config.opacity))
        return self._blend(image, texture, mask, opacity)

    def cutpaste(self, image: torch.Tensor, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """CutPaste-style anomaly: a (jittered) rectangle or thin scar from another normal image."""
        height, width = image.shape[-2:]
        source = jitter(self._source(rng, (height, width)), rng, strength=0.4)
        if rng.random() < self.config.scar_probability:
            thickness = max(2, round(min(height, width) * rng.uniform(0.015, 0.04)))
            length = max(4, round(min(height, width) * rng.uniform(0.15, 0.4)))
            patch_h, patch_w = (thickness, length) if rng.random() < 0.5 else (length, thickness)
        else:
            area = rng.uniform(*self.config.patch_area) * height * width
            aspect = float(
                np.exp(rng.uniform(np.log(self.config.patch_aspect[0]), np.log(self.config.patch_aspect[1])))
            )
            patch_h = int(np.clip(round(np.sqrt(area * aspect)), 2, height - 1))
            patch_w = int(np.clip(round(np.sqrt(area / aspect)), 2, width - 1))
        sy, sx = int(rng.integers(0, height - patch_h + 1)), int(rng.integers(0, width - patch_w + 1))
        ty, tx = int(rng.integers(0, height - patch_h + 1)), int(rng.integers(0, width - patch_w + 1))
        texture = image.clone()
        texture[:, ty : ty + patch_h, tx : tx + patch_w] = source[:, sy : sy + patch_h, sx : sx + patch_w]
        mask = torch.zeros(1, height, width)
        mask[:, ty : ty + patch_h, tx : tx + patch_w] = 1.0
        return self._blend(image, texture, mask, 1.0)

    def _blend(
        self, image: torch.Tensor, texture: torch.Tensor, mask: torch.Tensor, opacity: float
    ) -> tuple[torch.Tensor, torch.Tensor]:
        out = image * (1.0 - opacity * mask) + texture * (opacity * mask)
        visible = (out - image).abs().mean(dim=0, keepdim=True) >= self.config.min_visible_change
        return out.clamp(0.0, 1.0), mask * visible.float()

    def __call__(
        self, image: torch.Tensor, rng: np.random.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(anomalous image, mask)`` for one normal ``(3, H, W)`` image in ``[0, 1]`` (or uint8).

        Args:
            image: The normal image.
            rng: Generator to draw from (defaults to the synthesizer's own, seeded at construction).
        """
        rng = rng or self.rng
        if image.dtype == torch.uint8:
            image = image.float() / 255.0
        if image.ndim != 3 or image.shape[0] != 3:
            raise ValueError(f"expected one (3, H, W) image, got shape {tuple(image.shape)}")
        if rng.random() < self.config.perlin_probability:
            return self.perlin(image, rng)
        return self.cutpaste(image, rng)

    def batch(self, images: torch.Tensor, rng: np.random.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Apply :meth:`__call__` to each image of ``(N, 3, H, W)``; returns ``(N, 3, H, W)`` and ``(N, 1, H, W)``."""
        pairs = [self(image, rng) for image in images]
        return torch.stack([p[0] for p in pairs]), torch.stack([p[1] for p in pairs])
