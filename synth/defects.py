"""The five defect kinds, drawn on a part's local canvas, each returning its pixel mask.

Geometric defects (``bend``, ``missing``) change the height map *before* the part is rendered,
so the bevel shading and texture follow the damaged outline like on a real part. Surface
defects (``scratch``, ``stain``, ``contamination``) are painted on the rendered colours. Every
defect is confined to the part (or its edge) and sized relative to it: the accepted mask area is
0.1 %-5 % of the part area (retried with new parameters otherwise), typically 0.2 %-3 %, so
defects are visible in a crop without being gigantic.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage

from synth.components import PartShape
from synth.noise import fine_grain, smooth_noise

DEFECT_TYPES: tuple[str, ...] = ("scratch", "stain", "bend", "missing", "contamination")
GEOMETRIC_DEFECTS: frozenset[str] = frozenset({"bend", "missing"})

MIN_AREA_FRACTION = 0.001
MAX_AREA_FRACTION = 0.05
_MIN_PIXELS = 4
_ATTEMPTS = 12


def _area_ok(mask: np.ndarray, part_area: int) -> bool:
    n = int(mask.sum())
    return n >= _MIN_PIXELS and MIN_AREA_FRACTION * part_area <= n <= MAX_AREA_FRACTION * part_area


def _random_solid_point(rng: np.random.Generator, solid: np.ndarray, inset: int = 0) -> tuple[float, float]:
    """(x, y) of a random pixel at least ``inset`` px inside the part (best effort)."""
    probe = solid
    if inset > 0:
        eroded = ndimage.binary_erosion(solid[::2, ::2], iterations=max(1, inset // 2))
        if eroded.any():
            ys, xs = np.nonzero(eroded)
            i = int(rng.integers(len(ys)))
            return float(xs[i] * 2), float(ys[i] * 2)
    ys, xs = np.nonzero(probe[::2, ::2])
    i = int(rng.integers(len(ys)))
    return float(xs[i] * 2), float(ys[i] * 2)


def _boundary_point(rng: np.random.Generator, shape: PartShape) -> tuple[np.ndarray, np.ndarray] | None:
    """A point on the real outer boundary and its outward unit normal, both (x, y)."""
    solid = shape.solid
    h, w = solid.shape
    pts = shape.outline
    for _ in range(40):
        i = int(rng.integers(len(pts)))
        p = pts[i]
        t = pts[(i + 1) % len(pts)] - pts[i - 1]
        norm = float(np.hypot(*t))
        if norm < 1e-6:
            continue
        n = np.asarray([t[1], -t[0]]) / norm
        probe = max(2.0, shape.long_side * 0.01)

        def at(q: np.ndarray) -> bool:
            x, y = round(float(q[0])), round(float(q[1]))
            return 0 <= x < w and 0 <= y < h and bool(solid[y, x])

        out_solid, in_solid = at(p + n * probe), at(p - n * probe)
        if in_solid and not out_solid:
            return p, n
        if out_solid and not in_solid:
            return p, -n
    return None


# --------------------------------------------------------------------------- geometric


def _missing(rng: np.random.Generator, shape: PartShape) -> np.ndarray:
    """Break an irregular chunk off the outline; the belt shows through where it was."""
    solid = shape.solid
    area = int(solid.sum())
    h, w = solid.shape
    mask = np.zeros_like(solid)
    for _ in range(_ATTEMPTS):
        bp = _boundary_point(rng, shape)
        if bp is None:
            break
        p, n = bp
        r = shape.long_side * rng.uniform(0.04, 0.12)
        c = p + n * r * rng.uniform(0.0, 0.6)
        k = int(rng.integers(8, 16))
        ang = np.sort(rng.uniform(0, 2 * np.pi, k))
        rad = r * rng.uniform(0.5, 1.15, k)
        poly = [(float(c[0] + a * np.cos(t)), float(c[1] + a * np.sin(t))) for t, a in zip(ang, rad, strict=True)]
        img = Image.new("L", (w, h), 0)
        ImageDraw.Draw(img).polygon(poly, fill=1)
        cand = (np.asarray(img, dtype=bool)) & solid
        if _area_ok(cand, area):
            mask = cand
            break
        if cand.any() and not mask.any():
            mask = cand
    shape.height[mask] = 0
    return mask


def _bend(rng: np.random.Generator, shape: PartShape) -> np.ndarray:
    """Warp the outline locally: a bulge pushed outwards, a dent pushed in, or a sharper kink."""
    before = shape.solid.copy()
    area = int(before.sum())
    h, w = before.shape
    mask = np.zeros_like(before)
    best = None
    for _ in range(_ATTEMPTS):
        bp = _boundary_point(rng, shape)
        if bp is None:
            break
        p, n = bp
        t = np.asarray([-n[1], n[0]])
        sign = 1.0 if rng.random() < 0.7 else -1.0
        amp = shape.long_side * rng.uniform(0.03, 0.07)
        sig_t = shape.long_side * rng.uniform(0.03, 0.08)
        sig_n = shape.long_side * rng.uniform(0.05, 0.12)
        kink = rng.random() < 0.35
        reach = 3 * max(sig_t, sig_n) + amp
        x0, x1 = max(0, int(p[0] - reach)), min(w, int(p[0] + reach) + 1)
        y0, y1 = max(0, int(p[1] - reach)), min(h, int(p[1] + reach) + 1)
        yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
        dx, dy = xx - p[0], yy - p[1]
        dt = dx * t[0] + dy * t[1]
        dn = dx * n[0] + dy * n[1]
        g_t = np.clip(1 - np.abs(dt) / (1.8 * sig_t), 0, 1) if kink else np.exp(-(dt**2) / (2 * sig_t**2))
        g = g_t * np.exp(-(dn**2) / (2 * sig_n**2))
        # Material at x comes from x - sign*amp*g*n: positive sign pushes the edge outwards.
        sy = yy - sign * amp * g * n[1] - y0
        sx = xx - sign * amp * g * n[0] - x0
        patch = shape.height[y0:y1, x0:x1]
        warped = ndimage.map_coordinates(patch, [sy, sx], order=0, mode="nearest")
        changed = (warped > 0) != (patch > 0)
        cand = np.zeros_like(before)
        cand[y0:y1, x0:x1] = changed
        if _area_ok(cand, area) or (best is None and changed.any()):
            best = (y0, y1, x0, x1, warped, cand)
            if _area_ok(cand, area):
                break
    if best is not None:
        y0, y1, x0, x1, warped, mask = best
        shape.height[y0:y1, x0:x1] = warped
    return mask


def apply_geometric_defect(rng: np.random.Generator, kind: str, shape: PartShape) -> np.ndarray:
    """Damage the part's geometry in place.

    Args:
        rng: generator for the defect.
        kind: ``"bend"`` or ``"missing"``.
        shape: the part; its height map is modified.

    Returns:
        bool (h, w) mask of the pixels whose component membership changed.
    """
    if kind == "missing":
        return _missing(rng, shape)
    if kind == "bend":
        return _bend(rng, shape)
    raise ValueError(f"{kind!r} is not a geometric defect; use one of {sorted(GEOMETRIC_DEFECTS)}")


# --------------------------------------------------------------------------- surface


def _bezier(p0: np.ndarray, p1: np.ndarray, p2: np.ndarray, n: int) -> np.ndarray:
    t = np.linspace(0, 1, n)[:, None]
    return (1 - t) ** 2 * p0 + 2 * t * (1 - t) * p1 + t**2 * p2


def _scratch(rng: np.random.Generator, rgb: np.ndarray, solid: np.ndarray, long_side: float) -> np.ndarray:
    h, w = solid.shape
    img = Image.new("L", (w, h), 0)
    draw = ImageDraw.Draw(img)
    n_lines = int(rng.choice([1, 1, 1, 2, 2, 3]))
    for _ in range(n_lines):
        x, y = _random_solid_point(rng, solid)
        length = long_side * rng.uniform(0.1, 0.4)
        a = rng.uniform(0, 2 * np.pi)
        d = np.asarray([np.cos(a), np.sin(a)])
        p0 = np.asarray([x, y]) - d * length * rng.uniform(0, 0.5)
        p2 = p0 + d * length
        p1 = (p0 + p2) / 2 + np.asarray([-d[1], d[0]]) * length * rng.uniform(-0.3, 0.3)
        pts = _bezier(p0, p1, p2, 32)
        width = max(1, round(long_side * rng.uniform(0.002, 0.006)))
        # Depth (visibility) varies along the scratch like a real tool drag.
        depth = np.clip(0.6 + 0.5 * np.interp(np.arange(31), [0, 10, 20, 30], rng.uniform(-1, 1, 4)), 0.25, 1)
        for k in range(31):
            seg = [(float(pts[k, 0]), float(pts[k, 1])), (float(pts[k + 1, 0]), float(pts[k + 1, 1]))]
            draw.line(seg, fill=int(255 * depth[k]), width=width)
    a = np.asarray(img, dtype=np.float32) / 255.0
    a *= solid
    if rng.random() < 0.6:  # bright: bare metal exposed
        lift = np.float32(rng.uniform(45, 95))
        for c in range(3):
            rgb[c] += a * lift
    else:  # dark: groove in shadow
        k = np.float32(rng.uniform(0.35, 0.6))
        for c in range(3):
            rgb[c] *= 1 - a * k
    return a > 0.1


def _stain(rng: np.random.Generator, rgb: np.ndarray, solid: np.ndarray, long_side: float) -> np.ndarray:
    h, w = solid.shape
    r = long_side * rng.uniform(0.03, 0.1)
    x, y = _random_solid_point(rng, solid, inset=int(r * 0.5))
    half = int(r * 1.6) + 2
    x0, x1 = max(0, int(x) - half), min(w, int(x) + half)
    y0, y1 = max(0, int(y) - half), min(h, int(y) + half)
    yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    e = rng.uniform(0.6, 1.0)
    ang = rng.uniform(0, np.pi)
    u = ((xx - x) * np.cos(ang) + (yy - y) * np.sin(ang)) / r
    v = (-(xx - x) * np.sin(ang) + (yy - y) * np.cos(ang)) / (r * e)
    # Elliptic envelope broken up by two octaves of smooth noise: ragged, sometimes splattered.
    field = 1 - (u * u + v * v)
    field += rng.uniform(0.5, 0.9) * smooth_noise(rng, u.shape, rng.uniform(3, 6))
    field += 0.3 * smooth_noise(rng, u.shape, rng.uniform(8, 14))
    alpha = np.clip(field / 0.4, 0, 1)
    alpha = alpha * alpha * (3 - 2 * alpha)  # smoothstep: soft edge
    alpha *= solid[y0:y1, x0:x1]
    kind = int(rng.integers(4))
    strength = np.float32(rng.uniform(0.45, 0.8))
    patch = rgb[:, y0:y1, x0:x1]
    a = alpha * strength
    if kind == 0:  # rust: brown, grainy
        col = np.asarray((150, 78, 38), np.float32) * rng.uniform(0.8, 1.1)
        a = a * (1 + 0.3 * fine_grain(rng, a.shape))
        np.clip(a, 0, 1, out=a)
        for c in range(3):
            patch[c] += a * (col[c] - patch[c])
    elif kind == 1:  # oil: darker with a faint blue-violet sheen
        tint = np.asarray((0.55, 0.55, 0.68), np.float32)
        for c in range(3):
            patch[c] *= 1 - a * (1 - tint[c])
    elif kind == 2:  # heat tint: blue to straw
        col = np.asarray((85, 105, 175) if rng.random() < 0.6 else (190, 160, 80), np.float32)
        for c in range(3):
            patch[c] += a * (col[c] - patch[c])
    else:  # dried water mark: faint fill, darker rim
        rim = 4 * alpha * (1 - alpha)
        for c in range(3):
            patch[c] *= 1 - (0.12 * alpha + 0.35 * rim) * strength
    return _place(alpha > 0.3, (h, w), y0, x0) & solid


def _place(patch_mask: np.ndarray, shape: tuple[int, int], y0: int, x0: int) -> np.ndarray:
    out = np.zeros(shape, bool)
    out[y0 : y0 + patch_mask.shape[0], x0 : x0 + patch_mask.shape[1]] = patch_mask
    return out


def _contamination(rng: np.random.Generator, rgb: np.ndarray, solid: np.ndarray, long_side: float) -> np.ndarray:
    h, w = solid.shape
    kinds = rng.permutation(["specks", "fibre", "dirt"])[: int(rng.choice([1, 1, 2]))]
    total = np.zeros((h, w), bool)
    for kind in kinds:
        img = Image.new("L", (w, h), 0)
        draw = ImageDraw.Draw(img)
        x, y = _random_solid_point(rng, solid)
        if kind == "specks":
            spread = long_side * rng.uniform(0.02, 0.07)
            for _ in range(int(rng.integers(3, 14))):
                r = max(0.8, long_side * rng.uniform(0.003, 0.01))
                sx, sy = x + rng.normal(0, spread), y + rng.normal(0, spread)
                draw.ellipse([sx - r, sy - r * rng.uniform(0.6, 1), sx + r, sy + r], fill=255)
            col = np.full(3, rng.uniform(15, 50), np.float32)
        elif kind == "fibre":
            steps = int(rng.integers(15, 30))
            step = long_side * rng.uniform(0.005, 0.012)
            ang = rng.uniform(0, 2 * np.pi) + np.cumsum(rng.normal(0, 0.25, steps))
            px = x + np.concatenate([[0], np.cumsum(step * np.cos(ang))])
            py = y + np.concatenate([[0], np.cumsum(step * np.sin(ang))])
            width = max(1, round(long_side * rng.uniform(0.0015, 0.004)))
            draw.line([(float(a), float(b)) for a, b in zip(px, py, strict=True)], fill=255, width=width, joint="curve")
            col = (
                np.full(3, rng.uniform(20, 60), np.float32)
                if rng.random() < 0.7
                else np.asarray((215, 210, 195), np.float32)
            )
        else:  # dirt blob with a hard, irregular edge
            r = long_side * rng.uniform(0.012, 0.035)
            k = 14
            ang = np.linspace(0, 2 * np.pi, k, endpoint=False)
            rad = r * rng.uniform(0.55, 1.2, k)
            draw.polygon(
                [(float(x + a * np.cos(t)), float(y + a * np.sin(t))) for t, a in zip(ang, rad, strict=True)], fill=255
            )
            col = np.asarray((62, 48, 34), np.float32) * rng.uniform(0.6, 1.2)
        a = np.asarray(img, dtype=np.float32) / 255.0
        a *= solid
        ys, xs = np.nonzero(a.any(axis=1))[0], np.nonzero(a.any(axis=0))[0]
        if len(ys) == 0:
            continue
        sl = (slice(ys[0], ys[-1] + 1), slice(xs[0], xs[-1] + 1))
        aa = a[sl] * np.float32(rng.uniform(0.75, 0.95))
        shade = 1 + 0.15 * fine_grain(rng, aa.shape)
        for c in range(3):
            p = rgb[c][sl]
            p += aa * (col[c] * shade - p)
        total |= a > 0.3
    return total


_SURFACE = {"scratch": _scratch, "stain": _stain, "contamination": _contamination}


def apply_surface_defect(
    rng: np.random.Generator, kind: str, rgb: np.ndarray, solid: np.ndarray, long_side: float
) -> np.ndarray:
    """Paint a surface defect on the rendered part, in place.

    Parameters are re-drawn (on a scratch copy) until the mask area is within
    ``MIN_AREA_FRACTION``-``MAX_AREA_FRACTION`` of the part, so every defect is findable.

    Args:
        rng: generator for the defect.
        kind: ``"scratch"``, ``"stain"`` or ``"contamination"``.
        rgb: float32 (3, h, w) rendered part colours; modified.
        solid: bool (h, w) component region (defects stay on it).
        long_side: part size in pixels; defect sizes scale with it.

    Returns:
        bool (h, w) defect mask.
    """
    if kind not in _SURFACE:
        raise ValueError(f"{kind!r} is not a surface defect; use one of {sorted(_SURFACE)}")
    area = int(solid.sum())
    fallback: tuple[np.ndarray, np.ndarray] | None = None
    for _ in range(_ATTEMPTS):
        trial = rgb.copy()
        mask = _SURFACE[kind](rng, trial, solid, long_side)
        if _area_ok(mask, area):
            rgb[...] = trial
            return mask
        if mask.any() and fallback is None:
            fallback = (trial, mask)
    if fallback is None:
        raise RuntimeError(f"could not place a {kind} defect on this part (part area {area} px)")
    rgb[...] = fallback[0]
    return fallback[1]
