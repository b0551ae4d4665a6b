"""Pieces of a frame for the zoomable viewer: a region read from zarr on demand, shrunk to the size asked for.

The browser never receives a whole full-resolution frame: it asks for the part it shows at the pixel size it shows
it, and only the zarr chunks under that part are read. A region is never enlarged (zoomed past 1:1, the browser
scales the native pixels itself), so an answer is never larger than asked.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from enum import StrEnum

import numpy as np
import zarr
from PIL import Image

from storage.frame_store import FrameStore
from storage.overlay import contour_layer, heat_layer, heat_levels, resize_frame, resize_levels

#: Largest width or height of an answer, in pixels.
MAX_SIDE = 4096
JPEG_QUALITY = 85


class Layer(StrEnum):
    """What a region request draws."""

    IMAGE = "image"  # the frame's pixels (JPEG)
    HEATMAP = "heatmap"  # the heatmap in the colour map, transparent where nothing was scored (PNG)
    CONTOUR = "contour"  # the pixel-threshold contour (PNG)


class BadRegion(ValueError):
    """Region parameters the viewer cannot have sent; the message says which."""


@dataclass(frozen=True)
class Region:
    """A part of a frame (``y0:y1, x0:x1``, clipped to the frame) and the size to deliver it at."""

    y0: int
    x0: int
    y1: int
    x1: int
    width: int
    height: int


def plan_region(shape: tuple[int, int], x: int, y: int, w: int, h: int, width: int, height: int) -> Region:
    """The region ``(x, y, w, h)`` of a frame of ``shape`` clipped to it, and its output size.

    The output keeps the region's aspect ratio, fits in ``width`` x ``height``, and is at most the region's own
    size (no enlargement).

    Raises:
        BadRegion: A non-positive size, an output size outside 1..:data:`MAX_SIDE`, or a region outside the frame.
    """
    if w < 1 or h < 1:
        raise BadRegion("w and h must be at least 1")
    if not (1 <= width <= MAX_SIDE and 1 <= height <= MAX_SIDE):
        raise BadRegion(f"width and height must be between 1 and {MAX_SIDE}")
    frame_h, frame_w = shape
    x0, y0 = max(0, x), max(0, y)
    x1, y1 = min(frame_w, x + w), min(frame_h, y + h)
    if x0 >= x1 or y0 >= y1:
        raise BadRegion(f"the region lies outside the frame ({frame_w} x {frame_h})")
    scale = min(width / (x1 - x0), height / (y1 - y0), 1.0)
    out_w = min(width, max(1, int((x1 - x0) * scale + 0.5)))
    out_h = min(height, max(1, int((y1 - y0) * scale + 0.5)))
    return Region(y0, x0, y1, x1, out_w, out_h)


def _encode(picture: Image.Image, layer: Layer) -> bytes:
    buffer = io.BytesIO()
    if layer is Layer.IMAGE:
        picture.save(buffer, format="JPEG", quality=JPEG_QUALITY)
    else:
        picture.save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def _heat(store: FrameStore, shift_id: str, image_id: str, region: Region) -> np.ndarray:
    """The heatmap's region as display levels at the output size; zeros (nothing scored) without a heatmap."""
    try:
        array = store.heatmap(shift_id, image_id)
    except (FileNotFoundError, zarr.errors.NodeNotFoundError):
        return np.zeros((region.height, region.width), dtype=np.uint8)
    levels = heat_levels(array[region.y0 : region.y1, region.x0 : region.x1])
    return resize_levels(levels, (region.width, region.height))


def render_region(store: FrameStore, shift_id: str, image_id: str, layer: Layer, region: Region) -> bytes:
    """The encoded picture of one layer of ``region`` (JPEG for the image, PNG with transparency otherwise)."""
    size = (region.width, region.height)
    if layer is Layer.IMAGE:
        pixels = store.image(shift_id, image_id)[region.y0 : region.y1, region.x0 : region.x1]
        return _encode(resize_frame(pixels, size), layer)
    heat = _heat(store, shift_id, image_id, region)
    picture = heat_layer(heat) if layer is Layer.HEATMAP else contour_layer(heat)
    return _encode(picture, layer)


def media_type(layer: Layer) -> str:
    """The content type of a layer's answer."""
    return "image/jpeg" if layer is Layer.IMAGE else "image/png"
