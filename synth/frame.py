"""Compose one camera frame: belt, one part (maybe defective), shadow, lighting, sensor noise.

This is the single place that decides what a frame contains, so the shift generator and the
dataset generator produce identical-looking data. A frame is a pure function of its seed key and
defect kind: the scene (belt, part, pose, lighting) comes from ``default_rng([*key, 0])`` and the
defect from ``default_rng([*key, 1])``, so the same key with and without a defect shows the same
part in the same place.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
from PIL import Image

from synth.background import draw_belt
from synth.components import PartShape, make_part
from synth.defects import DEFECT_TYPES, GEOMETRIC_DEFECTS, apply_geometric_defect, apply_surface_defect
from synth.lighting import (
    add_sensor_noise,
    apply_gain,
    illumination_gain,
    light_direction,
    soft_shadow,
    to_uint8,
)
from synth.marks import apply_ink, draw_marks
from synth.surface import Material, coverage, pick_material, render_part

MIN_SIDE = 128  # smaller frames make parts too small for defects to be meaningful
LONG_SIDE_RANGE = (0.35, 0.65)  # part long side as a fraction of the frame's shorter side


@dataclass
class Frame:
    """One synthetic frame and its ground truth.

    Attributes:
        image: uint8 (H, W, 3) RGB.
        region: bool (H, W) component region *after* the defect (a missing chunk is excluded, a
            bulge included): what a segmenter should output.
        region_intact: bool (H, W) component region before a geometric defect (equals
            ``region`` for surface defects and good frames).
        defect: bool (H, W) defect pixels (all False for good frames).
        defect_type: None for good frames, else one of ``DEFECT_TYPES``.
        info: free-form description (family, material, angle, size) for debugging.
    """

    image: np.ndarray
    region: np.ndarray
    region_intact: np.ndarray
    defect: np.ndarray
    defect_type: str | None
    info: dict[str, object] = field(default_factory=dict)

    @property
    def crop_region(self) -> np.ndarray:
        """Region to crop training crops from: the intact part for ``missing`` (so the missing
        area lies inside the crop), the actual region otherwise (what scoring will see)."""
        return self.region_intact if self.defect_type == "missing" else self.region


def check_size(size: tuple[int, int]) -> tuple[int, int]:
    """Validate a (height, width) frame size and return it as ints."""
    if len(size) != 2:
        raise ValueError(f"size must be (height, width), got {size!r}")
    h, w = int(size[0]), int(size[1])
    if min(h, w) < MIN_SIDE:
        raise ValueError(
            f"frame size {h}x{w} (HxW) is too small: both sides must be >= {MIN_SIDE} px so the part "
            f"and its defects are resolvable; pass e.g. size=(192, 256)"
        )
    return h, w


def check_seed(seed: int) -> int:
    """Validate a seed: numpy seed sequences need a non-negative integer."""
    if isinstance(seed, bool) or int(seed) != seed or seed < 0:
        raise ValueError(f"seed must be a non-negative integer (got {seed!r}), e.g. seed=0")
    return int(seed)


def _rotate(arr: np.ndarray, angle: float, resample: Image.Resampling) -> np.ndarray:
    return np.asarray(Image.fromarray(arr).rotate(angle, resample=resample, expand=True), dtype=np.uint8)


class Line(NamedTuple):
    """What stays the same from frame to frame of one line: the product and the belt (``None``: drawn per frame)."""

    product: int | None = None
    belt: int | None = None


@dataclass
class _Scene:
    """Everything drawn from a frame's scene stream before any pixel is painted."""

    shape: PartShape
    material: Material
    long_side: float
    angle: float
    light_frame: tuple[float, float]
    light_local: np.ndarray
    pos_u: np.ndarray
    surf_rng: np.random.Generator
    scene_rng: np.random.Generator
    belt: int | None = None
    product: int | None = None


@dataclass
class _RotatedPart:
    """The part canvas turned into frame orientation, with its masks resampled alike."""

    rgba: np.ndarray
    alpha: np.ndarray
    region: np.ndarray
    intact: np.ndarray
    defect: np.ndarray


def render_frame(
    size: tuple[int, int],
    key: Sequence[int],
    defect_type: str | None = None,
    product: int | None = None,
    belt: int | None = None,
) -> Frame:
    """Render one frame.

    Args:
        size: (height, width) in pixels.
        key: integers identifying the frame (e.g. ``(seed, index)``); the frame is a
            deterministic function of ``key``, ``size``, ``defect_type``, ``product`` and ``belt``.
        defect_type: None for a good part, else one of ``DEFECT_TYPES``.
        product: None draws a new part (family, proportions, material) for every frame; an integer fixes the
            part's geometry and material to product number ``product``, as on a line that makes one product
            (pose, lighting, belt and defects still vary per frame; the product carries its own marks, see
            :mod:`synth.marks`).
        belt: None draws a new belt for every frame; an integer shows belt number ``belt`` in every frame, as
            under one camera.

    Returns:
        The frame and its masks.
    """
    h, w = check_size(size)
    if defect_type is not None and defect_type not in DEFECT_TYPES:
        raise ValueError(f"unknown defect type {defect_type!r}; use one of {', '.join(DEFECT_TYPES)}")
    rng = np.random.default_rng([*key, 0])
    drng = np.random.default_rng([*key, 1])
    scene = _draw_scene(rng, (h, w), product)
    scene.belt, scene.product = belt, product
    solid_intact, rgb, alpha, local_defect = _paint_part(scene, drng, defect_type)
    part = _rotate_part(scene, solid_intact, rgb, alpha, local_defect, defect_type)
    top, left = _place_part(scene.pos_u, part.region | part.intact, (h, w))
    sl_f, sl_l = _overlap_slices(part.region.shape, top, left, (h, w))
    img = _composite(scene, part, sl_f, sl_l, (h, w))
    region, intact, defect = _frame_masks(part, sl_f, sl_l, (h, w), defect_type)
    if defect_type is not None and not defect.any():
        raise RuntimeError(f"internal error: {defect_type} defect for key {tuple(key)} has an empty mask")
    info: dict[str, object] = {
        "family": scene.shape.family,
        "material": scene.material.name,
        "texture": scene.shape.texture,
        "angle": round(scene.angle, 2),
        "long_side": round(scene.long_side, 1),
    }
    return Frame(to_uint8(img), region, intact, defect, defect_type, info)


def product_part(product: int, long_side: float) -> PartShape:
    """Product ``product``'s part at ``long_side`` px: the same geometry, from the product's own stream, at any size."""
    return make_part(np.random.default_rng([product, 99]), long_side)


def _draw_scene(rng: np.random.Generator, size: tuple[int, int], product: int | None) -> _Scene:
    """Draw part geometry, material, pose and light first, so they do not depend on the defect.

    With a fixed ``product`` the part and material come from the product's own streams, and the
    frame's stream still advances by one draw each so everything after stays where it would be.
    """
    h, w = size
    long_side = min(h, w) * rng.uniform(*LONG_SIDE_RANGE)
    if product is None:
        shape = make_part(rng, long_side)
    else:
        rng.random()  # keeps the frame's own stream where it would be with a drawn part
        shape = product_part(product, long_side)
    if rng.random() < 0.15:
        shape.texture = "blasted"
    if product is None:
        material = pick_material(rng)
    else:
        rng.random()
        material = pick_material(np.random.default_rng([product, 98]))
    angle = float(rng.uniform(0, 360))
    light_frame = light_direction(rng)  # (dy, dx) in frame coordinates
    # Pillow rotates counter-clockwise on screen; express the light in the part's local frame.
    th = math.radians(angle)
    ly, lx = float(light_frame[0]), float(light_frame[1])
    light_local = np.asarray([ly * math.cos(th) + lx * math.sin(th), lx * math.cos(th) - ly * math.sin(th)])
    pos_u = rng.random(2)
    surf_rng = np.random.default_rng(rng.integers(2**63))
    scene_rng = np.random.default_rng(rng.integers(2**63))
    return _Scene(shape, material, long_side, angle, (ly, lx), light_local, pos_u, surf_rng, scene_rng)


def _paint_part(
    scene: _Scene, drng: np.random.Generator, defect_type: str | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Apply a geometric defect, render the part, print its marks, then apply a surface defect.

    All on the part's local canvas; the order matters because a geometric defect changes the
    solid that is rendered and a surface defect paints over the marks.

    Returns:
        (intact solid, RGB planes, alpha, local defect mask).
    """
    shape = scene.shape
    solid_intact = shape.solid.copy()
    local_defect = np.zeros_like(solid_intact)
    if defect_type in GEOMETRIC_DEFECTS:
        local_defect = apply_geometric_defect(drng, defect_type, shape)
    rgb, alpha = render_part(scene.surf_rng, shape, scene.material, scene.light_local)
    _print_marks(scene, rgb, solid_intact, shape.solid)
    if defect_type is not None and defect_type not in GEOMETRIC_DEFECTS:
        local_defect = apply_surface_defect(drng, defect_type, rgb, shape.solid, scene.long_side)
    return solid_intact, rgb, alpha, local_defect


def _print_marks(scene: _Scene, rgb: np.ndarray, solid_intact: np.ndarray, solid: np.ndarray) -> None:
    """Print the part's marks: drawn per frame for a one-off part, the product's own for a product.

    A product's marks are laid out once on the product's part (:func:`_product_ink`) and scaled to this
    frame's part, so every part carries them at the same place in the same style; where a chunk is missing,
    the mark is missing with it.
    """
    if scene.product is None:
        apply_ink(scene.surf_rng, rgb, draw_marks(scene.surf_rng, solid, scene.long_side))
        return
    reference = Image.fromarray(_product_ink(scene.product))
    h, w = solid_intact.shape
    ink = np.asarray(reference.resize((w, h), Image.Resampling.BILINEAR), np.float32)
    apply_ink(np.random.default_rng([scene.product, 95]), rgb, ink * solid)


#: Long side (px) of the part on which a product's marks are laid out once, then scaled to every frame.
_PRODUCT_MARKS_LONG_SIDE = 640.0


@functools.lru_cache(maxsize=8)
def _product_ink(product: int) -> np.ndarray:
    """The product's marks: float32 ink coverage on its part's canvas at ``_PRODUCT_MARKS_LONG_SIDE``."""
    shape = product_part(product, _PRODUCT_MARKS_LONG_SIDE)
    return draw_marks(np.random.default_rng([product, 96]), shape.solid, _PRODUCT_MARKS_LONG_SIDE)


def _rotate_part(
    scene: _Scene,
    solid_intact: np.ndarray,
    rgb: np.ndarray,
    alpha: np.ndarray,
    local_defect: np.ndarray,
    defect_type: str | None,
) -> _RotatedPart:
    """Rotate the whole local canvas into the frame orientation.

    The after-defect and the intact coverage are rotated together and thresholded alike, so the
    region masks agree with each other pixel for pixel.
    """
    angle = scene.angle
    rgba = np.empty((*alpha.shape, 4), np.uint8)
    for c in range(3):
        rgba[..., c] = np.clip(rgb[c], 0, 255).astype(np.uint8)
    rgba[..., 3] = (alpha * 255 + 0.5).astype(np.uint8)
    rot = _rotate(rgba, angle, Image.Resampling.BILINEAR)
    rot_defect = _rotate(local_defect.astype(np.uint8) * 255, angle, Image.Resampling.NEAREST) > 127
    cov = np.zeros((*alpha.shape, 3), np.uint8)
    cov[..., 0] = rgba[..., 3]
    cov[..., 1] = coverage(solid_intact) if defect_type in GEOMETRIC_DEFECTS else rgba[..., 3]
    rot_cov = _rotate(cov, angle, Image.Resampling.BILINEAR)
    rot_region = rot_cov[..., 0] >= 128
    rot_intact = rot_cov[..., 1] >= 128
    rot_alpha = rot[..., 3].astype(np.float32) / 255.0
    rot_defect &= rot_region | rot_intact  # rotation resampling must not leave stray pixels off the part
    return _RotatedPart(rot, rot_alpha, rot_region, rot_intact, rot_defect)


def _place_part(pos_u: np.ndarray, occupied: np.ndarray, size: tuple[int, int]) -> tuple[int, int]:
    """Canvas offset (top, left) that puts everything that is or was the part fully inside the frame."""
    h, w = size
    rows = np.flatnonzero(occupied.any(axis=1))
    cols = np.flatnonzero(occupied.any(axis=0))
    by0, by1, bx0, bx1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    margin = max(2, round(0.02 * min(h, w)))
    return _place_1d(pos_u[0], by0, by1, h, margin), _place_1d(pos_u[1], bx0, bx1, w, margin)


def _overlap_slices(
    canvas: tuple[int, int], top: int, left: int, size: tuple[int, int]
) -> tuple[tuple[slice, slice], tuple[slice, slice]]:
    """Slices of the frame and of the canvas where the placed canvas overlaps the frame."""
    h, w = size
    ch, cw = canvas
    fy0, fy1 = max(0, top), min(h, top + ch)
    fx0, fx1 = max(0, left), min(w, left + cw)
    ly0, lx0 = fy0 - top, fx0 - left
    sl_f = (slice(fy0, fy1), slice(fx0, fx1))
    sl_l = (slice(ly0, ly0 + fy1 - fy0), slice(lx0, lx0 + fx1 - fx0))
    return sl_f, sl_l


def _composite(
    scene: _Scene,
    part: _RotatedPart,
    sl_f: tuple[slice, slice],
    sl_l: tuple[slice, slice],
    size: tuple[int, int],
) -> np.ndarray:
    """Draw the belt, cast the part's soft shadow, lay the part over it, then light and noise.

    Returns:
        float32 (3, H, W) planes, before conversion to uint8.
    """
    scene_rng = scene.scene_rng
    ly, lx = scene.light_frame
    if scene.belt is None:
        img = draw_belt(scene_rng, size)
    else:
        scene_rng.random()  # the frame's own stream advances, as with a drawn belt's first draw
        img = draw_belt(np.random.default_rng([scene.belt, 97]), size)
    off = scene.long_side * scene_rng.uniform(0.01, 0.03)
    shadow = soft_shadow(
        part.rgba[..., 3], scene.long_side * scene_rng.uniform(0.01, 0.03), (round(-ly * off), round(-lx * off))
    )
    shadow_k = np.float32(scene_rng.uniform(0.25, 0.55))
    a = part.alpha[sl_l]
    keep = (1 - a) * (1 - shadow_k * shadow[sl_l])
    for c in range(3):
        p = img[c][sl_f]
        p *= keep
        p += a * part.rgba[..., c][sl_l].astype(np.float32)
    apply_gain(img, illumination_gain(scene_rng, size), scene_rng)
    add_sensor_noise(img, scene_rng)
    return img


def _frame_masks(
    part: _RotatedPart,
    sl_f: tuple[slice, slice],
    sl_l: tuple[slice, slice],
    size: tuple[int, int],
    defect_type: str | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Paste the canvas masks into frame-sized (region, intact region, defect) masks.

    For geometric defects the defect mask is the changed component pixels, taken from the same
    resampled masks the region comes from, so the masks agree exactly: missing = intact minus
    what is left, bend = gained or lost pixels.
    """

    def paste(local: np.ndarray) -> np.ndarray:
        out = np.zeros(size, bool)
        out[sl_f] = local[sl_l]
        return out

    region = paste(part.region)
    intact = paste(part.intact) if defect_type in GEOMETRIC_DEFECTS else region
    defect = paste(part.defect)
    if defect_type in GEOMETRIC_DEFECTS:
        changed = intact & ~region if defect_type == "missing" else intact ^ region
        if changed.any():
            defect = changed
    return region, intact, defect


def _place_1d(u: float, b0: int, b1: int, n: int, margin: int) -> int:
    """Canvas offset so the occupied span [b0, b1) lands inside [margin, n - margin)."""
    lo = margin - b0
    hi = n - margin - b1
    if hi < lo:  # part larger than the frame minus margins: centre it
        return (n - (b0 + b1)) // 2
    return lo + round(u * (hi - lo))


def render_empty_belt(size: tuple[int, int], key: Sequence[int]) -> np.ndarray:
    """Render a frame of bare belt (a gap between parts), lit and noisy like :func:`render_frame`.

    Plants see these whenever the conveyor runs without a part under the camera; the segmenter should find
    nothing on them, so scoring reports ``no_component`` instead of scoring the belt.

    Args:
        size: (height, width) in pixels.
        key: integers identifying the frame; a different stream than :func:`render_frame` uses for the same key.

    Returns:
        uint8 (H, W, 3) RGB.
    """
    h, w = check_size(size)
    scene_rng = np.random.default_rng([*key, 2])
    img = draw_belt(scene_rng, (h, w))
    apply_gain(img, illumination_gain(scene_rng, (h, w)), scene_rng)
    add_sensor_noise(img, scene_rng)
    return to_uint8(img)
