"""Materials and surface rendering: turns a part's height map into lit, textured RGB.

The detector must learn what normal metal looks like, so "normal" has to include the things
real parts show: machining grain (concentric lathe marks, straight brushing, bead blasting),
a specular sheen that depends on the light direction, bevel highlights on every edge and hole,
per-part colour (steel, aluminium, brass, anodised colours) and slight mottling.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFilter

from synth.components import BASE_LEVEL, PartShape
from synth.noise import fine_grain, smooth_noise, upsample


@dataclass(frozen=True)
class Material:
    """A surface finish: diffuse colour, how shiny it is, and the colour of its highlights."""

    name: str
    rgb: tuple[float, float, float]
    gloss: float
    highlight: tuple[float, float, float]


MATERIALS: tuple[Material, ...] = (
    Material("steel", (138, 141, 146), 0.55, (1.0, 1.0, 1.0)),
    Material("aluminium", (172, 175, 179), 0.45, (1.0, 1.0, 1.0)),
    Material("stainless", (152, 152, 150), 0.6, (1.0, 1.0, 0.98)),
    Material("blackened-steel", (62, 62, 66), 0.35, (0.9, 0.92, 1.0)),
    Material("brass", (170, 138, 72), 0.5, (1.0, 0.92, 0.7)),
    Material("copper", (176, 108, 76), 0.45, (1.0, 0.85, 0.72)),
    Material("anodised-blue", (52, 82, 148), 0.25, (0.85, 0.9, 1.0)),
    Material("anodised-red", (148, 44, 50), 0.25, (1.0, 0.85, 0.85)),
    Material("anodised-black", (44, 44, 48), 0.3, (0.95, 0.95, 1.0)),
    Material("zinc-yellow", (182, 166, 98), 0.4, (1.0, 0.97, 0.85)),
)


def pick_material(rng: np.random.Generator) -> Material:
    """Random material, bright metals more often than coloured finishes (as on most lines)."""
    weights = np.asarray([3, 3, 2, 1, 1.5, 0.7, 1, 0.6, 1, 1], np.float64)
    return MATERIALS[int(rng.choice(len(MATERIALS), p=weights / weights.sum()))]


def _texture(rng: np.random.Generator, shape: PartShape) -> tuple[np.ndarray, np.ndarray]:
    """Machining grain (multiplicative, around 0) and a gloss field (0..1) for the highlight."""
    h, w = shape.height.shape
    long_side = shape.long_side
    if shape.texture == "turned":
        cx, cy = shape.centre
        yy = (np.arange(h, dtype=np.float32) - np.float32(cy))[:, None]
        xx = (np.arange(w, dtype=np.float32) - np.float32(cx))[None, :]
        r = np.sqrt(yy * yy + xx * xx)
        n = int(r.max()) + 2
        # 1-D radial profile: fine lathe lines + a few wider tool bands, looked up per pixel.
        prof = rng.standard_normal(n).astype(np.float32) * rng.uniform(0.02, 0.05)
        band = np.interp(np.arange(n), np.linspace(0, n, 12), rng.standard_normal(12)).astype(np.float32)
        prof += band * rng.uniform(0.01, 0.04)
        period = rng.uniform(2.0, 5.0)
        prof += np.sin(np.arange(n, dtype=np.float32) * (2 * np.pi / period)).astype(np.float32) * 0.01
        tex = prof[r.astype(np.int32)]
        # Anisotropic "bow-tie" reflection of turned faces: bright where the grooves run
        # across the light direction.
        a = rng.uniform(0, np.pi)
        cosang = (xx * np.float32(np.cos(a)) + yy * np.float32(np.sin(a))) / np.maximum(r, 1.0)
        gloss = cosang * cosang
        gloss *= gloss
    else:
        along, across = (w, h) if shape.grain_axis == 0 else (h, w)
        streak_len = max(4, int(long_side * rng.uniform(0.05, 0.2)))
        # Grain lines about two pixels wide: one-pixel lines alias into a cross-hatch moire when the
        # part is rotated into the frame.
        rows = max(2, across // 2)
        coarse = rng.standard_normal((rows, max(2, along // streak_len))).astype(np.float32)
        fine = rng.standard_normal((rows, max(2, along // max(2, streak_len // 8)))).astype(np.float32)
        tgt = (across, along)
        tex = upsample(coarse, tgt, bicubic=False) * rng.uniform(0.02, 0.05)
        tex += upsample(fine, tgt, bicubic=False) * 0.015
        if shape.grain_axis == 1:
            tex = np.ascontiguousarray(tex.T)
        if shape.texture == "blasted":
            tex *= 0.3
            tex += fine_grain(rng, (h, w)) * 0.04
        # Brushed metal reflects in a broad band perpendicular to the grain.
        pos = np.linspace(-1, 1, along, dtype=np.float32)
        c = rng.uniform(-0.7, 0.7)
        band = np.exp(-((pos - c) ** 2) / (2 * rng.uniform(0.15, 0.5) ** 2)).astype(np.float32)
        gloss = np.broadcast_to(band[None, :] if shape.grain_axis == 0 else band[:, None], (h, w))
    tex = tex + smooth_noise(rng, (h, w), rng.uniform(3, 8)) * rng.uniform(0.01, 0.035)
    tex += fine_grain(rng, (h, w)) * rng.uniform(0.008, 0.02)
    return tex, gloss


def coverage(solid: np.ndarray) -> np.ndarray:
    """uint8 (h, w) antialiased coverage (0-255) of a boolean region.

    A slight blur stands in for the optics' point-spread: real part edges are never one-pixel
    steps. The component mask is this coverage >= 128 after rotation, for the intact and the
    damaged outline alike, so the two masks only differ where the part actually changed.
    """
    img = Image.fromarray(np.where(solid, 255, 0).astype(np.uint8))
    return np.asarray(img.filter(ImageFilter.GaussianBlur(0.6)), dtype=np.uint8)


def render_part(
    rng: np.random.Generator, shape: PartShape, material: Material, light: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Shade and texture a part on its local canvas.

    Args:
        rng: generator for this part's surface.
        shape: geometry (height map) to render.
        material: colour and gloss.
        light: (dy, dx) unit vector pointing towards the light, in local canvas coordinates.

    Returns:
        (rgb, alpha): float32 (3, h, w) colours in 0-255 (defined everywhere on the canvas so
        that bilinear rotation has no dark fringe) and float32 (h, w) coverage in [0, 1].
    """
    h, w = shape.height.shape
    himg = Image.fromarray(shape.height)
    alpha = coverage(shape.height > 0).astype(np.float32) / 255.0

    # Bevel shading from the slope of the blurred height map along the light direction.
    blur = max(1.0, shape.long_side * 0.005)
    hb = np.asarray(himg.filter(ImageFilter.GaussianBlur(blur)), dtype=np.float32)
    slope = np.zeros((h, w), np.float32)
    slope[1:-1, :] += (hb[2:, :] - hb[:-2, :]) * np.float32(light[0])
    slope[:, 1:-1] += (hb[:, 2:] - hb[:, :-2]) * np.float32(light[1])
    # A surface facing the light has its height *decreasing* towards the light, hence the minus.
    slope *= np.float32(-0.9 * blur / BASE_LEVEL)
    np.clip(slope, -0.7, 0.7, out=slope)

    tex, gloss = _texture(rng, shape)
    shade = 1.0 + slope
    shade += tex
    shade *= np.float32(rng.uniform(0.88, 1.12))
    # Broad lighting falloff across the part (the light is not at infinity).
    shade *= 1.0 + smooth_noise(rng, (h, w), 2.5) * np.float32(rng.uniform(0.03, 0.08))

    spec = gloss * np.float32(material.gloss * rng.uniform(40, 90))
    spec = spec * (1.0 + np.maximum(slope, 0) * 2.0)  # edges facing the light glint
    base = np.asarray(material.rgb, np.float32) * np.float32(rng.uniform(0.9, 1.1))
    base *= rng.uniform(0.985, 1.015, 3).astype(np.float32)
    rgb = np.empty((3, h, w), np.float32)
    for c in range(3):
        np.multiply(shade, base[c], out=rgb[c])
        rgb[c] += spec * np.float32(material.highlight[c])
    return rgb, alpha
