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
    """The frame as an RGB picture of ``size`` (width, height).

    Large shrinks first reduce by a whole factor (box averaging), then interpolate: as sharp as a plain bilinear
    resize of the reduced picture, and several times faster on a full frame.
    """
    picture = Image.fromarray(to_rgb8(frame))
    if picture.size == size:
        return picture
    return picture.resize(size, Image.Resampling.BILINEAR, reducing_gap=1.0)


def _level_table() -> np.ndarray:
    """Display level (0-255) of every float16 bit pattern: heatmaps are float16, so one lookup converts them."""
    values = np.arange(65536, dtype=np.uint16).view(np.float16).astype(np.float32)
    return (np.clip(np.nan_to_num(values, nan=0.0), 0.0, 1.0) * 255).round().astype(np.uint8)


_FLOAT16_LEVELS = _level_table()
#: Display level at and above which a pixel is at or above the pixel threshold (0.5 * 255 = 127.5 rounds to 128;
#: a value just below 0.5 rounds to 127 or less), so the contour drawn on levels is the contour of the stored map.
CONTOUR_INDEX = int(np.round(CONTOUR_LEVEL * 255))


def heat_levels(heat: np.ndarray) -> np.ndarray:
    """Heat values in [0, 1] as display levels 0-255 (uint8): what the colour map and the contour work on."""
    values = np.asarray(heat)
    if values.dtype == np.float16:
        return _FLOAT16_LEVELS[values.view(np.uint16)]
    return (np.clip(np.nan_to_num(values.astype(np.float32), nan=0.0), 0.0, 1.0) * 255).round().astype(np.uint8)


def resize_levels(levels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Display levels resampled to ``size`` (width, height)."""
    if (levels.shape[1], levels.shape[0]) == size:
        return levels
    picture = Image.fromarray(np.ascontiguousarray(levels), mode="L")
    return np.asarray(picture.resize(size, Image.Resampling.BILINEAR, reducing_gap=1.0))


def colourise(levels: np.ndarray) -> np.ndarray:
    """Display levels as RGB uint8 through :data:`COLOUR_MAP`."""
    return COLOUR_MAP[levels]


def contour_mask(levels: np.ndarray, width: int = 2) -> np.ndarray:
    """Pixels on the boundary of the region at or above the pixel threshold, about ``width`` pixels wide.

    The picture's own border is not a boundary: a region cut by the view is not outlined along the cut.
    """
    inside = np.asarray(levels) >= CONTOUR_INDEX
    padded = np.pad(inside, 1, mode="edge")
    interior = inside & padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    edge = inside & ~interior
    for _ in range(max(0, width - 1)):
        grown = np.pad(edge, 1)
        edge = edge | grown[:-2, 1:-1] | grown[2:, 1:-1] | grown[1:-1, :-2] | grown[1:-1, 2:]
    return edge


def _paletted(indices: np.ndarray, palette: np.ndarray, alpha: bytes) -> Image.Image:
    """A palette picture with an opacity per palette entry: one byte a pixel, quick to encode as PNG."""
    picture = Image.fromarray(np.ascontiguousarray(indices, dtype=np.uint8), mode="P")
    picture.putpalette(palette.astype(np.uint8).tobytes())
    picture.info["transparency"] = alpha
    return picture


# Opacity of each level in the app's overlay: none where nothing was scored (0), faint where the map is low, full
# from the pixel threshold up, so that what the detector flags stands out and normal texture stays visible.
_HEAT_ALPHA = bytes([0] + [round(255 * min(1.0, max(0.15, (level / CONTOUR_INDEX) ** 2))) for level in range(1, 256)])


def heat_layer(levels: np.ndarray) -> Image.Image:
    """The heatmap in the colour map: transparent where nothing was scored, faint below the threshold."""
    return _paletted(levels, COLOUR_MAP, _HEAT_ALPHA)


def contour_layer(levels: np.ndarray) -> Image.Image:
    """The pixel-threshold contour, transparent elsewhere."""
    return _paletted(contour_mask(levels).astype(np.uint8), np.array([(0, 0, 0), CONTOUR_COLOUR]), bytes([0, 255]))


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
    levels = resize_levels(heat_levels(heat[fy0:fy1, fx0:fx1]), size)
    heat_panel = Image.fromarray(colourise(levels))
    contour_panel = resize_frame(frame[fy0:fy1, fx0:fx1], size)
    contour_panel.paste(Image.new("RGB", size, CONTOUR_COLOUR), (0, 0), Image.fromarray(contour_mask(levels)))
    gap = 8
    panels = [context, heat_panel, contour_panel]
    sheet = Image.new("RGB", (sum(p.width for p in panels) + gap * 2, height), (255, 255, 255))
    left = 0
    for panel in panels:
        sheet.paste(panel, (left, (height - panel.height) // 2))
        left += panel.width + gap
    return sheet
