"""Procedural component shapes: the geometry of one machined part, in its own local frame.

A part is described by a height map on a local canvas (0 = no material, so holes and the
outside show the belt; larger values = raised features such as hubs and chamfers). The height
map gives both the component region (height > 0) and, through its slopes, the bevel shading the
renderer applies. Six families with randomised proportions keep the segmenter from learning one
template: flange, plate, L-bracket, gear, hex/octagon nut, stepped shaft.

All coordinates in this module are (x, y) pixel positions on the local canvas, which is what
Pillow's drawing functions take. The part is rotated into the frame later, as one image.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

FAMILIES: tuple[str, ...] = ("flange", "plate", "bracket", "gear", "nut", "shaft")

BASE_LEVEL = 110  # height of the main body; raised features sit above it, chamfers below


@dataclass
class PartShape:
    """Geometry of one part on its local canvas.

    Attributes:
        family: which generator made it.
        height: uint8 (h, w) height map; 0 = background (outside or a through-hole).
        outline: float (N, 2) (x, y) points of the outer contour, used to put edge defects
            (bends, missing chunks) on the real boundary.
        long_side: nominal longest dimension of the part in pixels; sizes of marks and defects
            scale with it.
        texture: "turned" (concentric lathe marks), "brushed" (straight grain) or "blasted".
        centre: (x, y) centre of the turning marks for "turned" texture.
        grain_axis: 0 = brushed grain runs along x, 1 = along y.
    """

    family: str
    height: np.ndarray
    outline: np.ndarray
    long_side: float
    texture: str
    centre: tuple[float, float]
    grain_axis: int = 0

    @property
    def solid(self) -> np.ndarray:
        """Boolean component region on the local canvas."""
        return self.height > 0


def circle_points(cx: float, cy: float, r: float, n: int | None = None) -> np.ndarray:
    """(n, 2) (x, y) points on a circle; ``n`` defaults to enough for a smooth edge at radius r."""
    n = n or max(24, int(r * 1.2))
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return np.stack([cx + r * np.cos(t), cy + r * np.sin(t)], axis=1)


def round_corners(pts: np.ndarray, radius: float, n: int = 8) -> np.ndarray:
    """Replace every vertex of a polygon by a quadratic Bezier fillet of about ``radius``.

    Works for convex and concave corners, so it rounds both the outside and the inside corner of
    an L-bracket; machined parts never have perfectly sharp corners.
    """
    out = []
    m = len(pts)
    t = np.linspace(0, 1, n)[:, None]
    for i in range(m):
        prev, cur, nxt = pts[i - 1], pts[i], pts[(i + 1) % m]
        d1, d2 = prev - cur, nxt - cur
        l1, l2 = float(np.hypot(*d1)), float(np.hypot(*d2))
        r = min(radius, 0.45 * l1, 0.45 * l2)
        if r < 0.5:
            out.append(cur[None, :])
            continue
        a = cur + d1 / l1 * r
        b = cur + d2 / l2 * r
        out.append((1 - t) ** 2 * a + 2 * t * (1 - t) * cur + t**2 * b)
    return np.concatenate(out, axis=0)


def rounded_rect(cx: float, cy: float, half_w: float, half_h: float, radius: float) -> np.ndarray:
    """(N, 2) points of an axis-aligned rectangle with rounded corners."""
    pts = np.asarray(
        [[cx - half_w, cy - half_h], [cx + half_w, cy - half_h], [cx + half_w, cy + half_h], [cx - half_w, cy + half_h]]
    )
    return round_corners(pts, radius, n=max(4, int(radius / 2)))


def _poly(draw: ImageDraw.ImageDraw, pts: np.ndarray, level: int) -> None:
    draw.polygon([(float(x), float(y)) for x, y in pts], fill=level)


def _disc(draw: ImageDraw.ImageDraw, cx: float, cy: float, r: float, level: int) -> None:
    draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=level)


class _Canvas:
    """A blank local canvas big enough for a part of nominal size (w, h) plus padding."""

    def __init__(self, part_w: float, part_h: float, long_side: float) -> None:
        # Padding leaves room for outward bends, the soft shadow and the antialiasing blur.
        self.pad = math.ceil(0.1 * long_side) + 6
        self.w = math.ceil(part_w) + 2 * self.pad
        self.h = math.ceil(part_h) + 2 * self.pad
        self.cx = self.w / 2
        self.cy = self.h / 2
        self.img = Image.new("L", (self.w, self.h), 0)
        self.draw = ImageDraw.Draw(self.img)

    def array(self) -> np.ndarray:
        return np.asarray(self.img, dtype=np.uint8).copy()


def _bore(rng: np.random.Generator, cv: _Canvas, r: float, keyway: bool) -> None:
    """A centre bore, sometimes with a keyway slot."""
    _disc(cv.draw, cv.cx, cv.cy, r, 0)
    if keyway:
        kw = r * rng.uniform(0.25, 0.4)
        kd = r * rng.uniform(0.2, 0.35)
        _poly(
            cv.draw,
            np.asarray(
                [
                    [cv.cx - kw / 2, cv.cy],
                    [cv.cx + kw / 2, cv.cy],
                    [cv.cx + kw / 2, cv.cy - r - kd],
                    [cv.cx - kw / 2, cv.cy - r - kd],
                ]
            ),
            0,
        )


def _flange(rng: np.random.Generator, long_side: float) -> PartShape:
    """Disc with a raised hub, centre bore and a bolt circle; sometimes two machined flats."""
    rad = long_side / 2
    cv = _Canvas(long_side, long_side, long_side)
    outline = circle_points(cv.cx, cv.cy, rad)
    if rng.random() < 0.3:  # two parallel flats
        flat = rad * rng.uniform(0.75, 0.92)
        outline = outline.copy()
        outline[:, 0] = np.clip(outline[:, 0], cv.cx - flat, cv.cx + flat)
    _poly(cv.draw, outline, BASE_LEVEL - 25)  # chamfer ring
    inner = outline.copy()
    inner -= (cv.cx, cv.cy)
    inner *= 1 - rng.uniform(0.02, 0.05)
    inner += (cv.cx, cv.cy)
    _poly(cv.draw, inner, BASE_LEVEL)
    hub = rad * rng.uniform(0.3, 0.55)
    if rng.random() < 0.8:
        _disc(cv.draw, cv.cx, cv.cy, hub, BASE_LEVEL + 60)
    bore = hub * rng.uniform(0.35, 0.75)
    _bore(rng, cv, bore, rng.random() < 0.3)
    n_holes = int(rng.choice([3, 4, 4, 5, 6, 6, 8]))
    pitch = (hub + rad) / 2 * rng.uniform(0.95, 1.05)
    hole = min((rad - hub) * rng.uniform(0.18, 0.3), pitch * math.sin(math.pi / n_holes) * 0.6)
    phase = rng.uniform(0, 2 * np.pi)
    for k in range(n_holes):
        a = phase + 2 * np.pi * k / n_holes
        _disc(cv.draw, cv.cx + pitch * math.cos(a), cv.cy + pitch * math.sin(a), hole, 0)
    return PartShape("flange", cv.array(), outline, long_side, "turned", (cv.cx, cv.cy))


def _plate(rng: np.random.Generator, long_side: float) -> PartShape:
    """Rounded rectangle with corner holes, slots or a window, sometimes an edge notch."""
    w = long_side
    h = long_side * rng.uniform(0.4, 0.8)
    cv = _Canvas(w, h, long_side)
    r = min(w, h) * rng.uniform(0.04, 0.2)
    outline = rounded_rect(cv.cx, cv.cy, w / 2, h / 2, r)
    if rng.random() < 0.3:  # notch cut into one long edge
        nw = w * rng.uniform(0.1, 0.25)
        nd = h * rng.uniform(0.15, 0.3)
        nx = cv.cx + rng.uniform(-0.25, 0.25) * w
        top = cv.cy - h / 2
        notch = np.asarray(
            [[nx - nw / 2, top - 2], [nx + nw / 2, top - 2], [nx + nw / 2, top + nd], [nx - nw / 2, top + nd]]
        )
        _poly(cv.draw, outline, BASE_LEVEL)
        _poly(cv.draw, round_corners(notch, nw * 0.2), 0)
        # The outline is only used to find boundary points, so the un-notched one is close enough
        # except inside the notch; drop those points.
        inside = (np.abs(outline[:, 0] - nx) < nw / 2) & (outline[:, 1] < top + nd)
        outline = outline[~inside]
    else:
        _poly(cv.draw, outline, BASE_LEVEL)
    hole = min(w, h) * rng.uniform(0.05, 0.09)
    if rng.random() < 0.85:
        inset = max(hole * 1.8, r * 0.9)
        for sx in (-1, 1):
            for sy in (-1, 1):
                hx, hy = cv.cx + sx * (w / 2 - inset), cv.cy + sy * (h / 2 - inset)
                if rng.random() < 0.25:  # counterbore: a lower ring around the hole
                    _disc(cv.draw, hx, hy, hole * 1.6, BASE_LEVEL - 35)
                _disc(cv.draw, hx, hy, hole, 0)
    feature = rng.choice(["slots", "window", "holes", "none"], p=[0.4, 0.25, 0.25, 0.1])
    if feature == "slots":
        n = int(rng.integers(1, 3))
        sl = w * rng.uniform(0.2, 0.35)
        sw = h * rng.uniform(0.08, 0.14)
        for k in range(n):
            oy = 0 if n == 1 else (k - 0.5) * h * 0.35
            _poly(cv.draw, rounded_rect(cv.cx, cv.cy + oy, sl / 2, sw / 2, sw / 2), 0)
    elif feature == "window":
        _poly(
            cv.draw, rounded_rect(cv.cx, cv.cy, w * rng.uniform(0.12, 0.22), h * rng.uniform(0.12, 0.22), h * 0.05), 0
        )
    elif feature == "holes":
        n = int(rng.integers(2, 5))
        for k in range(n):
            _disc(cv.draw, cv.cx + (k - (n - 1) / 2) * w * 0.15, cv.cy, hole * rng.uniform(0.6, 1.0), 0)
    return PartShape("plate", cv.array(), outline, long_side, "brushed", (cv.cx, cv.cy), grain_axis=0)


def _bracket(rng: np.random.Generator, long_side: float) -> PartShape:
    """L-shaped bracket: two legs with holes and a raised gusset in the inner corner."""
    a = long_side
    b = long_side * rng.uniform(0.5, 0.85)
    t1 = long_side * rng.uniform(0.18, 0.3)
    t2 = long_side * rng.uniform(0.18, 0.3)
    cv = _Canvas(a, b, long_side)
    x0, y0 = cv.cx - a / 2, cv.cy - b / 2
    pts = np.asarray(
        [[x0, y0], [x0 + t2, y0], [x0 + t2, y0 + b - t1], [x0 + a, y0 + b - t1], [x0 + a, y0 + b], [x0, y0 + b]]
    )
    if rng.random() < 0.5:  # mirror so the corner is not always bottom-left
        pts[:, 0] = 2 * cv.cx - pts[:, 0]
    outline = round_corners(pts, long_side * rng.uniform(0.02, 0.06), n=10)
    _poly(cv.draw, outline, BASE_LEVEL)
    inner_corner = pts[2]
    g = min(t1, t2) * rng.uniform(0.8, 1.4)
    if rng.random() < 0.6:  # gusset
        sx = 1 if pts[3, 0] > pts[2, 0] else -1
        gus = np.stack([inner_corner, inner_corner + np.asarray([sx * g, 0.0]), inner_corner + np.asarray([0.0, -g])])
        _poly(cv.draw, gus, BASE_LEVEL + 50)
    hole = min(t1, t2) * rng.uniform(0.18, 0.3)
    long_leg_y = y0 + b - t1 / 2
    short_leg_x = (pts[0, 0] + pts[1, 0]) / 2
    for f in rng.uniform(0.35, 0.9, int(rng.integers(1, 3))):
        start = pts[2, 0] + (pts[3, 0] - pts[2, 0]) * f
        _disc(cv.draw, start, long_leg_y, hole, 0)
    if rng.random() < 0.8:
        slot = min(hole * 2.2, (b - t1) * 0.22)
        _poly(cv.draw, rounded_rect(short_leg_x, y0 + (b - t1) * rng.uniform(0.35, 0.5), hole, slot, hole), 0)
    return PartShape("bracket", cv.array(), outline, long_side, "brushed", (cv.cx, cv.cy), grain_axis=0)


def _gear(rng: np.random.Generator, long_side: float) -> PartShape:
    """Spur gear: trapezoidal teeth, bore with keyway, optional lightening holes and hub."""
    rad = long_side / 2
    cv = _Canvas(long_side, long_side, long_side)
    teeth = int(rng.integers(12, 37))
    depth = rad * rng.uniform(0.06, 0.13) * (24 / teeth) ** 0.5
    root = rad - depth
    n = teeth * 16
    theta = np.linspace(0, 2 * np.pi, n, endpoint=False) + rng.uniform(0, 2 * np.pi)
    f = (theta * teeth / (2 * np.pi)) % 1.0
    # root 30 %, rising flank 20 %, tip 30 %, falling flank 20 %
    prof = np.clip(np.minimum((f - 0.3) / 0.2, (1.0 - f) / 0.2), 0, 1)
    r = root + depth * prof
    outline = np.stack([cv.cx + r * np.cos(theta), cv.cy + r * np.sin(theta)], axis=1)
    _poly(cv.draw, outline, BASE_LEVEL)
    web = root * rng.uniform(0.75, 0.88)
    if rng.random() < 0.6:  # recessed web between rim and hub
        _disc(cv.draw, cv.cx, cv.cy, web, BASE_LEVEL - 30)
    hub = root * rng.uniform(0.25, 0.4)
    _disc(cv.draw, cv.cx, cv.cy, hub, BASE_LEVEL + 40)
    if rng.random() < 0.5:
        k = int(rng.integers(4, 7))
        pr = (hub + web) / 2
        hr = min((web - hub) * 0.35, pr * math.sin(math.pi / k) * 0.7)
        ph = rng.uniform(0, 2 * np.pi)
        for i in range(k):
            a = ph + 2 * np.pi * i / k
            _disc(cv.draw, cv.cx + pr * math.cos(a), cv.cy + pr * math.sin(a), hr, 0)
    _bore(rng, cv, hub * rng.uniform(0.45, 0.7), rng.random() < 0.6)
    return PartShape("gear", cv.array(), outline, long_side, "turned", (cv.cx, cv.cy))


def _nut(rng: np.random.Generator, long_side: float) -> PartShape:
    """Hex (sometimes octagon) nut: flat sides, a turned chamfer circle and a large bore."""
    rad = long_side / 2
    cv = _Canvas(long_side, long_side, long_side)
    sides = 6 if rng.random() < 0.8 else 8
    t = np.arange(sides) * 2 * np.pi / sides + rng.uniform(0, np.pi)
    pts = np.stack([cv.cx + rad * np.cos(t), cv.cy + rad * np.sin(t)], axis=1)
    outline = round_corners(pts, rad * rng.uniform(0.03, 0.1), n=8)
    _poly(cv.draw, outline, BASE_LEVEL)
    inradius = rad * math.cos(math.pi / sides)
    _disc(cv.draw, cv.cx, cv.cy, inradius * rng.uniform(0.9, 0.98), BASE_LEVEL + 40)  # chamfer face
    bore = inradius * rng.uniform(0.4, 0.62)
    _disc(cv.draw, cv.cx, cv.cy, bore * 1.12, BASE_LEVEL + 10)  # countersink
    _disc(cv.draw, cv.cx, cv.cy, bore, 0)
    return PartShape("nut", cv.array(), outline, long_side, "turned", (cv.cx, cv.cy))


def _shaft(rng: np.random.Generator, long_side: float) -> PartShape:
    """Stepped turned shaft seen from the side: cylinder shading, lathe grain across the axis."""
    length = long_side
    n_steps = int(rng.integers(2, 5))
    cuts = np.sort(rng.uniform(0.15, 0.85, n_steps - 1))
    bounds = np.concatenate([[0.0], cuts, [1.0]]) * length
    dia_max = long_side * rng.uniform(0.18, 0.32)
    dias = dia_max * rng.uniform(0.5, 1.0, n_steps)
    dias[int(rng.integers(n_steps))] = dia_max
    cv = _Canvas(length, dia_max, long_side)
    x0 = cv.cx - length / 2
    xs = np.arange(cv.w, dtype=np.float32) - x0
    radius = np.zeros(cv.w, np.float32)
    chamfer = dia_max * 0.06
    for i in range(n_steps):
        seg = (xs >= bounds[i]) & (xs < bounds[i + 1])
        rr = np.full(seg.sum(), dias[i] / 2, np.float32)
        # small chamfers at both ends of each step
        d_in = xs[seg] - bounds[i]
        d_out = bounds[i + 1] - xs[seg]
        rr = np.minimum(rr, dias[i] / 2 - chamfer + np.minimum(d_in, d_out))
        radius[seg] = np.maximum(rr, 1)
    yy = (np.arange(cv.h, dtype=np.float32) - cv.cy)[:, None]
    v = yy / np.maximum(radius[None, :], 1e-3)
    inside = (np.abs(v) < 1) & (radius[None, :] > 1)
    height = np.where(inside, 40 + 200 * np.sqrt(np.clip(1 - v * v, 0, 1)), 0).astype(np.uint8)
    height[inside & (height == 0)] = 1
    top = np.stack([x0 + np.linspace(0, length, 200), np.zeros(200)], axis=1)
    r_at = np.interp(top[:, 0], np.arange(cv.w), radius)
    outline = np.concatenate([np.stack([top[:, 0], cv.cy - r_at], 1), np.stack([top[::-1, 0], cv.cy + r_at[::-1]], 1)])
    if rng.random() < 0.4:  # cross hole through the shaft
        img = Image.fromarray(height)
        d = ImageDraw.Draw(img)
        hx = x0 + rng.uniform(0.2, 0.8) * length
        hr = float(np.interp(hx, np.arange(cv.w), radius)) * rng.uniform(0.2, 0.4)
        _disc(d, hx, cv.cy, hr, 0)
        height = np.asarray(img, dtype=np.uint8).copy()
    return PartShape("shaft", height, outline, long_side, "brushed", (cv.cx, cv.cy), grain_axis=1)


_BUILDERS: dict[str, Callable[[np.random.Generator, float], PartShape]] = {
    "flange": _flange,
    "plate": _plate,
    "bracket": _bracket,
    "gear": _gear,
    "nut": _nut,
    "shaft": _shaft,
}


def make_part(rng: np.random.Generator, long_side: float, family: str | None = None) -> PartShape:
    """Draw a random part.

    Args:
        rng: generator for this part.
        long_side: nominal longest dimension in pixels.
        family: force a family (one of ``FAMILIES``); random if None.

    Returns:
        The part's local geometry.
    """
    if family is None:
        family = FAMILIES[int(rng.integers(len(FAMILIES)))]
    if family not in _BUILDERS:
        raise ValueError(f"unknown component family {family!r}; use one of {', '.join(FAMILIES)}")
    return _BUILDERS[family](rng, float(long_side))
