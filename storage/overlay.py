"""How a heatmap is drawn: one colour map and one contour for the review app and the static report alike.

Heatmaps are stored normalised (``tasks/score_frames.py``, ``models/detector/calibration.py``): values in [0, 1],
the detector's pixel threshold at exactly 0.5, and 0 outside the scored box. So the pixel-threshold contour is the
0.5 level of the stored map, with no calibration to look up, and "nothing scored here" is a value of exactly 0.

Only numpy and Pillow: the review app (``review/``, which depends on ``storage/`` only) and the overlay task
(``tasks/render_overlays.py``) draw with these functions, so a reviewer and the nightly report see the same colours.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

#: Normalised heatmap value of the detector's pixel threshold.
CONTOUR_LEVEL = 0.5
CONTOUR_COLOUR = (0, 255, 255)  # cyan: stands out on grey parts and on every colour of the map
BOX_COLOUR = (255, 220, 0)

# Matplotlib's "inferno" at nine evenly spaced points (perceptually uniform, readable in grey print): dark is
# normal, bright yellow is far above the threshold, the threshold (0.5) is a red-violet.
_STOPS = np.array(
    [
        (0, 0, 4),
        (31, 12, 72),
        (85, 15, 109),
        (136, 34, 106),
        (186, 54, 85),
        (227, 89, 51),
        (249, 140, 10),
        (249, 201, 50),
        (252, 255, 164),
    ],
    dtype=np.float32,
)
_POSITIONS = np.linspace(0.0, 1.0, len(_STOPS))
#: The colour map as a 256-entry RGB lookup table.
COLOUR_MAP = (
    np.stack([np.interp(np.linspace(0.0, 1.0, 256), _POSITIONS, _STOPS[:, c]) for c in range(3)], axis=-1)
    .round()
    .astype(np.uint8)
)


def colour_bar_css() -> str:
    """A CSS ``linear-gradient`` of the colour map (left 0, right 1), for the legends next to heatmaps."""
    pairs = zip(_STOPS, _POSITIONS, strict=True)
    stops = ", ".join(f"rgb({r:.0f},{g:.0f},{b:.0f}) {p * 100:.1f}%" for (r, g, b), p in pairs)
    return f"linear-gradient(to right, {stops})"


def to_rgb8(frame: np.ndarray) -> np.ndarray:
    """A stored frame (grey or colour, uint8, uint16 or floats in [0, 1]) as 8-bit RGB for display."""
    if frame.ndim == 2:
        frame = frame[..., None]
    if frame.dtype == np.uint16:
        frame = (frame / 257).astype(np.uint8)
    elif frame.dtype != np.uint8:
        frame = (np.clip(frame, 0.0, 1.0) * 255).round().astype(np.uint8)
    if frame.shape[-1] == 1:
        frame = np.repeat(frame, 3, axis=-1)
    return np.ascontiguousarray(frame[..., :3])


def resize_frame(frame: np.ndarray, size: tuple[int, int]) -> Image.Image:
    """The frame as an RGB picture of ``size`` (width, height); reducing in steps keeps large shrinks fast."""
    picture = Image.fromarray(to_rgb8(frame))
    if picture.size == size:
        return picture
    return picture.resize(size, Image.Resampling.BILINEAR, reducing_gap=2.0)


def resize_heat(heat: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A heatmap (any float dtype) resampled to ``size`` (width, height), float32."""
    values = np.asarray(heat, dtype=np.float32)
    if (values.shape[1], values.shape[0]) == size:
        return values
    return np.asarray(Image.fromarray(values, mode="F").resize(size, Image.Resampling.BILINEAR))


def colourise(heat: np.ndarray) -> np.ndarray:
    """Heat values in [0, 1] as RGB uint8 through :data:`COLOUR_MAP`."""
    index = (np.clip(np.nan_to_num(heat, nan=0.0), 0.0, 1.0) * 255).round().astype(np.uint8)
    return COLOUR_MAP[index]


def contour_mask(heat: np.ndarray, level: float = CONTOUR_LEVEL, width: int = 2) -> np.ndarray:
    """Pixels on the boundary of ``heat >= level``, about ``width`` pixels wide.

    The picture's own border is not a boundary: a region cut by the view is not outlined along the cut.
    """
    inside = np.asarray(heat) >= level
    padded = np.pad(inside, 1, mode="edge")
    interior = inside & padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    edge = inside & ~interior
    for _ in range(max(0, width - 1)):
        grown = np.pad(edge, 1)
        edge = edge | grown[:-2, 1:-1] | grown[2:, 1:-1] | grown[1:-1, :-2] | grown[1:-1, 2:]
    return edge


def heat_layer(heat: np.ndarray) -> Image.Image:
    """The heatmap as an RGBA layer: colour-mapped inside the scored region, transparent where nothing was scored."""
    rgba = np.zeros((*heat.shape, 4), dtype=np.uint8)
    rgba[..., :3] = colourise(heat)
    rgba[..., 3] = np.where(np.asarray(heat) > 0, 255, 0).astype(np.uint8)
    return Image.fromarray(rgba, mode="RGBA")


def contour_layer(heat: np.ndarray) -> Image.Image:
    """The pixel-threshold contour as an RGBA layer (transparent elsewhere)."""
    edge = contour_mask(heat)
    rgba = np.zeros((*heat.shape, 4), dtype=np.uint8)
    rgba[edge] = (*CONTOUR_COLOUR, 255)
    return Image.fromarray(rgba, mode="RGBA")


def _scaled(size: tuple[int, int], height: int, max_width: int) -> tuple[int, int]:
    """``size`` (width, height) scaled to ``height``, or less where that would be wider than ``max_width``."""
    scale = min(height / size[1], max_width / size[0])
    return max(1, round(size[0] * scale)), max(1, round(size[1] * scale))


def _focus(shape: tuple[int, int], box: tuple[int, int, int, int] | None) -> tuple[int, int, int, int]:
    """The part of the frame the heatmap panels show: the scored box and a margin of a tenth, or the whole frame."""
    if box is None:
        return 0, 0, shape[0], shape[1]
    y0, x0, y1, x1 = box
    margin = max(4, round(0.1 * max(y1 - y0, x1 - x0)))
    return max(0, y0 - margin), max(0, x0 - margin), min(shape[0], y1 + margin), min(shape[1], x1 + margin)


def side_by_side(
    frame: np.ndarray, heat: np.ndarray, box: tuple[int, int, int, int] | None, height: int = 320
) -> Image.Image:
    """Three panels for the report: the frame with the scored box, the box's heatmap in the colour map, and the
    box's pixels with the pixel-threshold contour. Panels 2 and 3 show the same region, so the eye can compare.

    Args:
        frame: The full frame (any dtype :func:`to_rgb8` takes).
        heat: The full normalised heatmap, same height and width as the frame.
        box: The scored box ``(y0, x0, y1, x1)``, or ``None`` (the panels then show the whole frame).
        height: Height of every panel in pixels.
    """
    shape = frame.shape[:2]
    whole = _scaled((shape[1], shape[0]), height, 2 * height)
    context = resize_frame(frame, whole)
    if box is not None:
        scale = whole[0] / shape[1]
        y0, x0, y1, x1 = (round(v * scale) for v in box)
        ImageDraw.Draw(context).rectangle([x0, y0, max(x0, x1 - 1), max(y0, y1 - 1)], outline=BOX_COLOUR, width=2)
    fy0, fx0, fy1, fx1 = _focus(shape, box)
    size = _scaled((fx1 - fx0, fy1 - fy0), height, 2 * height)
    crop_heat = resize_heat(heat[fy0:fy1, fx0:fx1], size)
    heat_panel = Image.fromarray(colourise(crop_heat))
    contour_panel = resize_frame(frame[fy0:fy1, fx0:fx1], size)
    outline = contour_layer(crop_heat)
    contour_panel.paste(outline, (0, 0), outline)
    gap = 8
    panels = [context, heat_panel, contour_panel]
    sheet = Image.new("RGB", (sum(p.width for p in panels) + gap * 2, height), (255, 255, 255))
    left = 0
    for panel in panels:
        sheet.paste(panel, (left, (height - panel.height) // 2))
        left += panel.width + gap
    return sheet
