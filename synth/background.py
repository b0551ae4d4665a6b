"""The conveyor belt the components lie on.

A segmenter trained on a flat background learns nothing useful, so the belt has what real belts
have: a periodic weave, ridges across the running direction, wear streaks along it, dirt
mottling, an occasional splice seam, guide rails at the frame edge (bright metal that is *not*
the component), and loose specks of debris (dark dots that are *not* defects because they are
not on the part). Colours are dark grey / green / blue / black and change from frame to frame.
"""

from __future__ import annotations

import numpy as np

from synth.noise import fine_grain, smooth_noise

# Dark belt tones (RGB, 0-255).
BELT_COLOURS: tuple[tuple[float, float, float], ...] = (
    (58.0, 60.0, 63.0),  # grey PVC
    (38.0, 66.0, 48.0),  # green PVC
    (36.0, 50.0, 78.0),  # blue PU (food / pharma)
    (30.0, 31.0, 33.0),  # black rubber
    (70.0, 68.0, 62.0),  # worn grey-beige
)


def _periodic_profile(rng: np.random.Generator, n: int, period: float, sharpness: float) -> np.ndarray:
    """A 1-D periodic ridge profile in [-1, 1] with a random phase and slight jitter."""
    x = np.arange(n, dtype=np.float32)
    phase = rng.uniform(0, 2 * np.pi)
    wobble = np.cumsum(rng.normal(0, 0.002, n)).astype(np.float32)  # slight period drift
    s = np.sin(2 * np.pi * x / period + phase + wobble)
    return (np.tanh(sharpness * s) / np.tanh(sharpness)).astype(np.float32)


def _smooth_1d(rng: np.random.Generator, n: int, cells: int) -> np.ndarray:
    """Smooth 1-D noise (unit-ish variance) by linear interpolation of ``cells`` random values."""
    knots = rng.standard_normal(cells + 1)
    return np.interp(np.linspace(0, cells, n), np.arange(cells + 1), knots).astype(np.float32)


def draw_belt(rng: np.random.Generator, size: tuple[int, int]) -> np.ndarray:
    """Render a belt background.

    Args:
        rng: generator for this frame's background.
        size: (height, width) of the frame.

    Returns:
        float32 array (3, H, W) of linear RGB values around 20-120 (no lighting applied yet).
    """
    h, w = size
    vertical = bool(rng.random() < 0.3)  # belt running direction in the image
    # Work in belt coordinates: u = along the running direction, v = across it.
    nu, nv = (h, w) if vertical else (w, h)

    ridge_period = rng.uniform(0.006, 0.02) * max(h, w)
    ridges_u = _periodic_profile(rng, nu, ridge_period, rng.uniform(0.5, 3.0)) * rng.uniform(0.02, 0.07)
    weave_period = rng.uniform(3.0, 9.0)
    weave_u = _periodic_profile(rng, nu, weave_period, 1.0)
    weave_v = _periodic_profile(rng, nv, weave_period * rng.uniform(0.8, 1.25), 1.0)
    weave_amp = rng.uniform(0.015, 0.06)
    wear_v = _smooth_1d(rng, nv, int(rng.integers(20, 80))) * rng.uniform(0.01, 0.04)
    wear_v += rng.standard_normal(nv).astype(np.float32) * rng.uniform(0.002, 0.01)  # fine lengthwise scuffs

    seam_u = np.zeros(nu, np.float32)
    if rng.random() < 0.35:  # belt splice: a narrow band with a different sheen
        c = rng.uniform(0.05, 0.95) * nu
        half = rng.uniform(0.002, 0.008) * nu
        x = np.arange(nu, dtype=np.float32)
        seam_u = (np.abs(x - c) < half).astype(np.float32) * float(rng.choice([-0.12, 0.1]))

    along = ridges_u + seam_u  # 1-D along u
    if vertical:
        pattern = along[:, None] + wear_v[None, :]
        pattern += weave_amp * (weave_u[:, None] * weave_v[None, :])
    else:
        pattern = along[None, :] + wear_v[:, None]
        pattern += weave_amp * (weave_v[:, None] * weave_u[None, :])
    pattern += smooth_noise(rng, (h, w), rng.uniform(4, 12)) * rng.uniform(0.03, 0.09)  # dirt mottling
    pattern += fine_grain(rng, (h, w)) * rng.uniform(0.02, 0.05)
    pattern += 1.0

    base = np.asarray(BELT_COLOURS[int(rng.integers(len(BELT_COLOURS)))], np.float32)
    base *= rng.uniform(0.8, 1.2)
    base *= rng.uniform(0.92, 1.08, 3).astype(np.float32)  # per-frame tint jitter
    out = np.empty((3, h, w), np.float32)
    for c in range(3):
        np.multiply(pattern, base[c], out=out[c])

    _add_rails(rng, out, vertical)
    _add_debris(rng, out)
    return out


def _add_rails(rng: np.random.Generator, img: np.ndarray, vertical: bool) -> None:
    """Bright brushed guide rails along the belt edges (sometimes); a segmentation distractor."""
    if rng.random() >= 0.4:
        return
    _, h, w = img.shape
    across = w if vertical else h
    along = h if vertical else w
    colour = np.asarray((150.0, 152.0, 156.0), np.float32) * rng.uniform(0.7, 1.1)
    for side in (0, 1):
        if rng.random() < 0.35:
            continue
        width = max(2, int(across * rng.uniform(0.02, 0.06)))
        streak = 1.0 + _smooth_1d(rng, width, max(2, width // 3)) * 0.08
        edge = np.linspace(0.75, 1.1, width, dtype=np.float32)  # curved rail face shading
        prof = (streak * edge if side == 0 else (streak * edge)[::-1]).astype(np.float32)
        along_noise = 1.0 + 0.03 * _smooth_1d(rng, along, 30)
        sl = slice(0, width) if side == 0 else slice(across - width, across)
        for c in range(3):
            if vertical:
                img[c][:, sl] = colour[c] * along_noise[:, None] * prof[None, :]
            else:
                img[c][sl, :] = colour[c] * prof[:, None] * along_noise[None, :]


def _add_debris(rng: np.random.Generator, img: np.ndarray) -> None:
    """A few dark / light specks lying on the belt (not defects: they are off the part)."""
    _, h, w = img.shape
    n = int(rng.poisson(4)) if rng.random() < 0.6 else 0
    scale = min(h, w)
    for _ in range(n):
        r = max(1.0, rng.uniform(0.0015, 0.006) * scale)
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        y0, y1 = max(0, int(cy - r - 1)), min(h, int(cy + r + 2))
        x0, x1 = max(0, int(cx - r - 1)), min(w, int(cx + r + 2))
        if y1 <= y0 or x1 <= x0:
            continue
        yy, xx = np.ogrid[y0:y1, x0:x1]
        d = np.sqrt((yy - cy) ** 2 + (xx - cx) ** 2) / r
        a = np.clip(1.5 - d, 0, 1).astype(np.float32)
        tone = rng.uniform(0.3, 0.6) if rng.random() < 0.7 else rng.uniform(1.5, 2.5)
        for c in range(3):
            patch = img[c, y0:y1, x0:x1]
            patch *= 1 + a * (tone - 1)
