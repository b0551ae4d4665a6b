"""Cheap random fields: smooth low-frequency noise and fine grain.

Everything in a synthetic frame that should look "natural" (belt dirt, uneven lighting, metal
mottling, stain outlines) is built from two primitives here. Both are designed to be fast on a
full camera frame: the smooth field is drawn at a few cells and upsampled by two small matrix
products (separable Catmull-Rom resampling, one BLAS call); the fine grain is tiled from two
small random patches with co-prime sizes, which costs a memory copy instead of millions of
Gaussian draws and has no visible period.
"""

from __future__ import annotations

import functools

import numpy as np

# Two co-prime patch sizes: the sum of the two tilings only repeats every ~66k pixels.
_TILE_A = (251, 257)
_TILE_B = (263, 269)


@functools.lru_cache(maxsize=256)
def _interp_matrix(n_out: int, n_in: int, cubic: bool) -> np.ndarray:
    """(n_out, n_in) matrix that resamples a length-n_in signal to n_out samples.

    Pixel centres are aligned like image resizing does; cubic uses Catmull-Rom weights (what
    "bicubic" means in most libraries), otherwise linear. Edges are clamped.
    """
    x = (np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5
    i0 = np.floor(x).astype(np.int64)
    f = x - i0
    m = np.zeros((n_out, n_in), np.float64)
    rows = np.arange(n_out)
    if cubic:
        taps = (
            (-1, ((-0.5 * f + 1.0) * f - 0.5) * f),
            (0, (1.5 * f - 2.5) * f * f + 1.0),
            (1, ((-1.5 * f + 2.0) * f + 0.5) * f),
            (2, (0.5 * f - 0.5) * f * f),
        )
    else:
        taps = ((0, 1.0 - f), (1, f))
    for k, wgt in taps:
        np.add.at(m, (rows, np.clip(i0 + k, 0, n_in - 1)), wgt)
    out = m.astype(np.float32)
    out.flags.writeable = False
    return out


def _resample(field: np.ndarray, my: np.ndarray | None, mx: np.ndarray | None) -> np.ndarray:
    """``my @ field @ mx.T`` with the cheaper multiplication order; None means identity."""
    if my is None and mx is None:
        return field.copy()
    if my is None:
        return field @ mx.T
    if mx is None:
        return my @ field
    (h, ch), (w, cw) = my.shape, mx.shape
    if h * ch * cw + h * cw * w <= ch * cw * w + h * ch * w:
        return (my @ field) @ mx.T
    return my @ (field @ mx.T)


def upsample(field: np.ndarray, shape: tuple[int, int], bicubic: bool = True) -> np.ndarray:
    """Resize a small float field to ``shape`` (H, W).

    Done as two small matrix products (separable resampling) rather than with Pillow or
    ``scipy.ndimage.zoom``: for a field of a few dozen cells this is a single BLAS call and
    avoids Pillow's slow image-to-array conversion, which matters for 2048x1536 frames.

    Args:
        field: 2-D array (any float dtype).
        shape: target (height, width).
        bicubic: Catmull-Rom if True (smooth fields), linear otherwise (streaks, where cubic
            would overshoot).

    Returns:
        float32 array of ``shape`` (a fresh, writable array).
    """
    f = np.asarray(field, dtype=np.float32)
    my = None if shape[0] == f.shape[0] else _interp_matrix(shape[0], f.shape[0], bicubic)
    mx = None if shape[1] == f.shape[1] else _interp_matrix(shape[1], f.shape[1], bicubic)
    return np.ascontiguousarray(_resample(f, my, mx), dtype=np.float32)


def smooth_noise(rng: np.random.Generator, shape: tuple[int, int], cells: float) -> np.ndarray:
    """Zero-mean, roughly unit-variance smooth noise with about ``cells`` blobs along the long side.

    Args:
        rng: generator to draw from.
        shape: output (height, width).
        cells: number of independent values along the longer side (>= 2); small = smoother.

    Returns:
        float32 array of ``shape``.
    """
    h, w = shape
    long_side = max(h, w)
    ch = max(2, round(cells * h / long_side)) + 2
    cw = max(2, round(cells * w / long_side)) + 2
    coarse = rng.standard_normal((ch, cw)).astype(np.float32)
    # Resample onto a grid one cell larger than the output and keep a random window, so blob
    # centres do not always sit at the same fractions of the image.
    big_h, big_w = round(h * ch / (ch - 2)), round(w * cw / (cw - 2))
    oy = int(rng.integers(0, big_h - h + 1))
    ox = int(rng.integers(0, big_w - w + 1))
    my = _interp_matrix(big_h, ch, True)[oy : oy + h]
    mx = _interp_matrix(big_w, cw, True)[ox : ox + w]
    out = _resample(coarse, my, mx)
    std = float(out.std())
    if std > 1e-6:
        out *= np.float32(1.0 / std)
    return out


def fine_grains(rng: np.random.Generator, shape: tuple[int, int], count: int) -> list[np.ndarray]:
    """``count`` mutually uncorrelated unit-variance grain fields from one tiling.

    The windows are read-only views at different offsets of one padded field, so asking for
    several (sensor noise per channel, belt grain) costs a single tiling.

    Args:
        rng: generator to draw from.
        shape: (height, width) of each field.
        count: how many fields.

    Returns:
        list of float32 views of ``shape`` (do not write to them).
    """
    h, w = shape
    pad = 61
    big = fine_grain(rng, (h + pad, w + pad))
    big.flags.writeable = False
    offsets = [(0, 0), (pad, pad), (pad, 0), (0, pad), (pad // 2, 17), (17, pad // 2), (pad // 3, pad)]
    if count > len(offsets):
        raise ValueError(f"at most {len(offsets)} grain fields per call, asked for {count}")
    return [big[oy : oy + h, ox : ox + w] for oy, ox in offsets[:count]]


def fine_grain(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """Per-pixel Gaussian-like grain (unit variance) at the cost of a memory copy.

    Args:
        rng: generator to draw from.
        shape: output (height, width).

    Returns:
        float32 array of ``shape``.
    """
    h, w = shape
    out = np.empty(shape, np.float32)
    first = True
    for th, tw in (_TILE_A, _TILE_B):
        tile = rng.standard_normal((th, tw), dtype=np.float32) * np.float32(np.sqrt(0.5))
        oy = int(rng.integers(0, th))
        ox = int(rng.integers(0, tw))
        reps = (-(-(h + oy) // th), -(-(w + ox) // tw))
        tiled = np.tile(tile, reps)[oy : oy + h, ox : ox + w]
        if first:
            out[...] = tiled
            first = False
        else:
            out += tiled
    return out
