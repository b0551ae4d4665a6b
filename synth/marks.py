"""Printed and stamped marks on parts: part numbers, logo rings, DataMatrix-like codes.

Real parts carry laser marks, ink-jet codes and stamped numbers. They are *normal*: a detector
that flags every mark is useless, so good training crops must contain them. A part drawn for one
frame gets marks at random positions, sizes and orientations; a product made on a line carries
*its* marks (part number, logo, code) at the same place of every part (``synth.frame``).
"""

from __future__ import annotations

import functools
import string

import numpy as np
from PIL import Image, ImageDraw, ImageFont

_ALNUM = string.ascii_uppercase + string.digits


@functools.lru_cache(maxsize=64)
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """Pillow's bundled font at ``size`` px (cached: loading costs more than drawing)."""
    return ImageFont.load_default(size=size)


def _code(rng: np.random.Generator) -> str:
    """A random part-number-like string, e.g. ``DF-4821``, ``LOT 23A7``, ``M12x1.5``."""
    kind = int(rng.integers(5))
    digits = "".join(str(int(d)) for d in rng.integers(0, 10, int(rng.integers(3, 6))))
    letters = "".join(_ALNUM[int(i)] for i in rng.integers(0, 26, int(rng.integers(1, 4))))
    if kind == 0:
        return f"{letters}-{digits}"
    if kind == 1:
        return f"LOT {digits}{letters[:1]}"
    if kind == 2:
        return f"M{int(rng.integers(4, 25))}x{rng.choice(['1', '1.25', '1.5', '2'])}"
    if kind == 3:
        return f"{digits} {letters}"
    return f"SN{digits}{letters}"


def _text_stamp(rng: np.random.Generator, long_side: float) -> np.ndarray:
    size = max(7, int(long_side * rng.uniform(0.035, 0.065)))
    lines = [_code(rng) for _ in range(int(rng.integers(1, 3)))]
    font = _font(size)
    text = "\n".join(lines)
    probe = ImageDraw.Draw(Image.new("L", (1, 1)))
    x0, y0, x1, y1 = probe.multiline_textbbox((0, 0), text, font=font)
    img = Image.new("L", (x1 - x0 + 2, y1 - y0 + 2), 0)
    ImageDraw.Draw(img).multiline_text((1 - x0, 1 - y0), text, fill=255, font=font)
    return np.asarray(img, dtype=np.uint8)


def _logo_ring(rng: np.random.Generator, long_side: float) -> np.ndarray:
    d = max(8, int(long_side * rng.uniform(0.06, 0.12)))
    img = Image.new("L", (d + 2, d + 2), 0)
    dr = ImageDraw.Draw(img)
    lw = max(1, d // 12)
    dr.ellipse([1, 1, d, d], outline=255, width=lw)
    if rng.random() < 0.5:
        dr.ellipse([d * 0.3, d * 0.3, d * 0.7 + 1, d * 0.7 + 1], fill=255)
    else:
        dr.line([(d * 0.25, d * 0.7), (d * 0.5, d * 0.3), (d * 0.75, d * 0.7)], fill=255, width=lw)
    return np.asarray(img, dtype=np.uint8)


def _matrix_code(rng: np.random.Generator, long_side: float) -> np.ndarray:
    n = int(rng.choice([10, 12, 14, 16]))
    cell = max(1, int(long_side * rng.uniform(0.004, 0.008)))
    bits = rng.random((n, n)) < 0.5
    bits[:, 0] = True  # L-shaped finder pattern of a DataMatrix
    bits[-1, :] = True
    bits[0, ::2] = True
    bits[0, 1::2] = False
    bits[::2, -1] = False
    bits[1::2, -1] = True
    return np.kron(bits, np.ones((cell, cell), bool)).astype(np.uint8) * 255


def _ticks(rng: np.random.Generator, long_side: float) -> np.ndarray:
    n = int(rng.integers(2, 6))
    step = max(3, int(long_side * 0.015))
    ln = max(4, int(long_side * rng.uniform(0.03, 0.06)))
    lw = max(1, int(long_side * 0.003))
    img = Image.new("L", (n * step + 2, ln + 2), 0)
    dr = ImageDraw.Draw(img)
    for k in range(n):
        x = 1 + k * step
        dr.line([(x, 1), (x, ln if k % 2 == 0 else ln * 0.6)], fill=255, width=lw)
    return np.asarray(img, dtype=np.uint8)


_MAKERS = (_text_stamp, _text_stamp, _logo_ring, _matrix_code, _ticks)


def draw_marks(rng: np.random.Generator, solid: np.ndarray, long_side: float) -> np.ndarray:
    """Place 0-3 random marks where the part is solid.

    Args:
        rng: generator for this part's marks.
        solid: bool (h, w) component region on the local canvas; marks never hang over an edge.
        long_side: part size in pixels; marks scale with it.

    Returns:
        float32 (h, w) ink coverage in [0, 1].
    """
    h, w = solid.shape
    ink = np.zeros((h, w), np.float32)
    n = int(rng.choice([0, 1, 1, 2, 2, 3]))
    ys, xs = np.nonzero(solid[::4, ::4])
    if len(ys) == 0:
        return ink
    for _ in range(n):
        stamp = _MAKERS[int(rng.integers(len(_MAKERS)))](rng, long_side)
        stamp = np.rot90(stamp, int(rng.integers(4)))
        sh, sw = stamp.shape
        for _try in range(12):  # find a spot fully on material (with a small border)
            i = int(rng.integers(len(ys)))
            y0, x0 = ys[i] * 4 - sh // 2, xs[i] * 4 - sw // 2
            b = 2
            if y0 - b < 0 or x0 - b < 0 or y0 + sh + b > h or x0 + sw + b > w:
                continue
            if not solid[y0 - b : y0 + sh + b, x0 - b : x0 + sw + b].all():
                continue
            region = ink[y0 : y0 + sh, x0 : x0 + sw]
            np.maximum(region, stamp.astype(np.float32) / 255.0, out=region)
            break
    return ink


def apply_ink(rng: np.random.Generator, rgb: np.ndarray, ink: np.ndarray) -> None:
    """Blend marks into the part colours, in place: laser-black, white paint or etched."""
    if not ink.any():
        return
    style = int(rng.integers(3))
    opacity = np.float32(rng.uniform(0.55, 0.95))
    a = ink * opacity
    if style == 0:  # laser / ink-jet black
        colour = np.full(3, rng.uniform(15, 45), np.float32)
    elif style == 1:  # white paint
        colour = np.full(3, rng.uniform(200, 235), np.float32)
    else:  # etched: darker version of the surface itself
        colour = None
    ys, xs = np.nonzero(a.any(axis=1))[0], np.nonzero(a.any(axis=0))[0]
    sl = (slice(ys[0], ys[-1] + 1), slice(xs[0], xs[-1] + 1))
    aa = a[sl]
    for c in range(3):
        p = rgb[c][sl]
        if colour is None:
            p *= 1 - aa * 0.45
        else:
            p += aa * (colour[c] - p)
