"""Camera-side effects applied to the whole frame: uneven lighting, vignetting, shadow, noise.

Real inspection frames are never evenly lit: ring lights and bar lights leave a smooth
brightness field with a hot spot, lenses darken the corners, the part casts a soft shadow on the
belt and the sensor adds noise. These effects are what make a global threshold fail, so the
segmenter and the detector must cope with them.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageFilter

from synth.noise import fine_grains, upsample


def light_direction(rng: np.random.Generator) -> np.ndarray:
    """Unit 2-D vector (dy, dx) the main light comes *from*, shared by shading and shadow."""
    a = rng.uniform(0, 2 * np.pi)
    return np.asarray([np.sin(a), np.cos(a)], np.float32)


def illumination_gain(rng: np.random.Generator, size: tuple[int, int]) -> np.ndarray:
    """Multiplicative brightness field: smooth unevenness + hot spot - vignetting, times exposure.

    Args:
        rng: generator for this frame's lighting.
        size: (height, width).

    Returns:
        float32 (H, W) gain, roughly 0.55-1.3.
    """
    h, w = size
    coarse = rng.uniform(-1, 1, (3, 4)).astype(np.float32) * rng.uniform(0.03, 0.12)
    # Radial terms from 1-D profiles: r^2 is a sum of a row and a column term, and a Gaussian of
    # r^2 is a product of two 1-D Gaussians, so each costs one full-frame broadcast.
    y = np.linspace(-1, 1, h, dtype=np.float32)
    x = np.linspace(-1, 1, w, dtype=np.float32) * np.float32(w / h)
    cy, cx = rng.uniform(-0.3, 0.3), rng.uniform(-0.3, 0.3) * (w / h)
    vig = rng.uniform(0.06, 0.22) / (1 + (w / h) ** 2)
    hot_r2 = np.float32(rng.uniform(0.6, 1.4) ** 2)
    hot = np.float32(rng.uniform(0.0, 0.18))
    ry = (y - np.float32(cy)) ** 2
    rx = (x - np.float32(cx)) ** 2
    gain = upsample(coarse, size)
    gain += 1.0
    gain -= np.float32(vig) * ry[:, None]
    gain -= np.float32(vig) * rx[None, :]
    gain += (hot * np.exp(-ry / hot_r2))[:, None] * np.exp(-rx / hot_r2)[None, :]
    gain *= np.float32(rng.uniform(0.8, 1.05))  # exposure
    return gain


def apply_gain(img: np.ndarray, gain: np.ndarray, rng: np.random.Generator) -> None:
    """Multiply the (3, H, W) image in place by ``gain`` and a slight colour-temperature cast."""
    cast = rng.uniform(0.975, 1.025, 3).astype(np.float32)
    for c in range(3):
        img[c] *= gain
        if abs(cast[c] - 1) > 1e-6:
            img[c] *= cast[c]


def soft_shadow(alpha: np.ndarray, blur_px: float, offset: tuple[int, int]) -> np.ndarray:
    """A soft shadow of the part, same shape as ``alpha``.

    Blurred at quarter resolution because a wide Gaussian at full resolution would dominate the
    frame time.

    Args:
        alpha: uint8 (h, w) part coverage 0-255 (the rotated part canvas).
        blur_px: Gaussian radius in full-resolution pixels.
        offset: (dy, dx) shift of the shadow away from the light.

    Returns:
        float32 (h, w) shadow strength in [0, 1].
    """
    h, w = alpha.shape
    f = 4
    small = Image.fromarray(np.ascontiguousarray(alpha, dtype=np.uint8)).resize(
        (max(1, w // f), max(1, h // f)), Image.Resampling.BOX
    )
    small = small.filter(ImageFilter.GaussianBlur(max(0.5, blur_px / f)))
    sh = upsample(np.asarray(small, dtype=np.float32) / 255.0, (h, w), bicubic=False)
    dy, dx = offset
    out = np.zeros_like(sh)
    ys, yd = (slice(0, h - dy), slice(dy, h)) if dy >= 0 else (slice(-dy, h), slice(0, h + dy))
    xs, xd = (slice(0, w - dx), slice(dx, w)) if dx >= 0 else (slice(-dx, w), slice(0, w + dx))
    out[yd, xd] = sh[ys, xs]
    return np.clip(out, 0, 1)


def add_sensor_noise(img: np.ndarray, rng: np.random.Generator) -> None:
    """Add luminance grain plus weaker per-channel (chroma) grain, in place, to (3, H, W)."""
    _, h, w = img.shape
    sigma = np.float32(rng.uniform(1.2, 3.5))
    chroma = np.float32(sigma * 0.45)
    lum, *per_channel = fine_grains(rng, (h, w), 4)
    lum = lum * sigma
    for c in range(3):
        img[c] += lum
        img[c] += per_channel[c] * chroma


def to_uint8(img: np.ndarray) -> np.ndarray:
    """(3, H, W) float -> (H, W, 3) uint8 with rounding and clipping."""
    _, h, w = img.shape
    out = np.empty((h, w, 3), np.uint8)
    for c in range(3):
        plane = np.clip(img[c], 0, 255)
        plane += 0.5
        out[..., c] = plane.astype(np.uint8)
    return out
