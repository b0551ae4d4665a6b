"""From a low-resolution segmentation to a full-resolution crop box, and from a crop heat map back to the frame.

The segmenter labels a downscaled frame (long side 512 by default). Coordinates are mapped back exactly: pixel
``(i, j)`` of an ``(h, w)`` small mask covers the full-resolution rows ``[i*H/h, (i+1)*H/h)`` and columns
``[j*W/w, (j+1)*W/w)`` of an ``(H, W)`` frame, so a run of small rows ``[r0, r1)`` becomes the integer rows
``[floor(r0*H/h), ceil(r1*H/h))`` — the smallest pixel box that contains it, whatever the scale factor.

Crop rule (:func:`crop_box` on the synthetic generator's exact region mask, :func:`crop_region` on the segmenter's
components; one :func:`expand_box` for both): take the
bounding box of the component pixels, grow each side by ``max(min_margin, round(margin_fraction * max(box
height, box width)))`` pixels, and clip it to the frame.

Only numpy and scipy: this runs in the scoring workers next to the detector, without torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from scipy import ndimage

#: 8-connectivity: pixels touching by a corner belong to the same component.
_EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)


@dataclass(frozen=True)
class Box:
    """Half-open pixel box ``[y0, y1) x [x0, x1)`` in full-resolution frame coordinates."""

    y0: int
    x0: int
    y1: int
    x1: int

    def __post_init__(self) -> None:
        if self.y1 < self.y0 or self.x1 < self.x0:
            raise ValueError(f"box corners are reversed: {self}")

    @property
    def height(self) -> int:
        return self.y1 - self.y0

    @property
    def width(self) -> int:
        return self.x1 - self.x0

    @property
    def area(self) -> int:
        return self.height * self.width

    @property
    def shape(self) -> tuple[int, int]:
        """``(height, width)``, the shape of the crop."""
        return self.height, self.width

    @property
    def slices(self) -> tuple[slice, slice]:
        """``frame[box.slices]`` is the crop."""
        return slice(self.y0, self.y1), slice(self.x0, self.x1)

    def to_dict(self) -> dict[str, int]:
        """JSON-safe form (for tables and task results)."""
        return {"y0": self.y0, "x0": self.x0, "y1": self.y1, "x1": self.x1}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Box:
        return cls(int(data["y0"]), int(data["x0"]), int(data["y1"]), int(data["x1"]))


@dataclass(frozen=True)
class CropRegion:
    """The region of a frame that goes to the detector.

    Attributes:
        box: Full-resolution crop box, ``None`` when no component was found.
        status: ``"ok"`` or ``"no_component"``.
        reason: Human-readable explanation (what was found, or why nothing was kept).
        n_components: Number of components kept (above the minimum area).
    """

    box: Box | None
    status: Literal["ok", "no_component"]
    reason: str
    n_components: int


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def _check_shapes(mask_small: np.ndarray, full_shape: tuple[int, int]) -> tuple[int, int, int, int]:
    if mask_small.ndim != 2:
        raise ValueError(f"mask_small must be a 2-D label map, got shape {mask_small.shape}")
    h, w = mask_small.shape
    big_h, big_w = int(full_shape[0]), int(full_shape[1])
    if min(h, w, big_h, big_w) < 1:
        raise ValueError(f"empty mask {mask_small.shape} or frame {full_shape}")
    return h, w, big_h, big_w


def small_to_full_box(
    rows: tuple[int, int], cols: tuple[int, int], small_shape: tuple[int, int], full_shape: tuple[int, int]
) -> Box:
    """Smallest full-resolution box covering small-mask rows ``[r0, r1)`` and columns ``[c0, c1)``."""
    (r0, r1), (c0, c1) = rows, cols
    h, w = small_shape
    big_h, big_w = full_shape
    return Box(r0 * big_h // h, c0 * big_w // w, _ceil_div(r1 * big_h, h), _ceil_div(c1 * big_w, w))


def margin_for(box: Box, margin_fraction: float = 0.08, min_margin: int = 16) -> int:
    """Margin added to each side: ``max(min_margin, round(margin_fraction * max(height, width)))``."""
    return max(int(min_margin), round(margin_fraction * max(box.height, box.width)))


def expand_box(box: Box, full_shape: tuple[int, int], margin_fraction: float = 0.08, min_margin: int = 16) -> Box:
    """Grow ``box`` by :func:`margin_for` on every side and clip it to the frame."""
    margin = margin_for(box, margin_fraction, min_margin)
    return Box(
        max(0, box.y0 - margin),
        max(0, box.x0 - margin),
        min(int(full_shape[0]), box.y1 + margin),
        min(int(full_shape[1]), box.x1 + margin),
    )


def crop_box(
    region_mask: np.ndarray, margin_fraction: float = 0.08, min_margin: int = 16
) -> tuple[int, int, int, int] | None:
    """The crop rule on a full-resolution region mask: its bounding box grown by :func:`margin_for`, clipped.

    The synthetic generator crops its training parts with this, scoring crops the segmenter's components with
    :func:`crop_region`; both grow the box with :func:`expand_box`, so the detector sees one framing.

    Args:
        region_mask: 2-D array, non-zero where the component is.
        margin_fraction, min_margin: As in :func:`margin_for`.

    Returns:
        ``(y0, x0, y1, x1)``, half-open, or ``None`` when the mask is empty.
    """
    if region_mask.ndim != 2:
        raise ValueError(f"region_mask must be 2-D (H, W), got shape {region_mask.shape}")
    rows = np.flatnonzero(region_mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(region_mask.any(axis=0))
    tight = Box(int(rows[0]), int(cols[0]), int(rows[-1]) + 1, int(cols[-1]) + 1)
    box = expand_box(tight, region_mask.shape, margin_fraction, min_margin)
    return box.y0, box.x0, box.y1, box.x1


def union_box(boxes: list[Box]) -> Box | None:
    """Smallest box containing all ``boxes``; ``None`` for an empty list."""
    if not boxes:
        return None
    return Box(min(b.y0 for b in boxes), min(b.x0 for b in boxes), max(b.y1 for b in boxes), max(b.x1 for b in boxes))


def _components(
    mask_small: np.ndarray, component_class: int | None, min_area_fraction: float
) -> tuple[list[tuple[int, tuple[slice, slice]]], float]:
    """Kept components as ``(pixel count, small-mask slices)``, largest first, and the largest area fraction."""
    binary = mask_small != 0 if component_class is None else mask_small == component_class
    labels, count = ndimage.label(binary, structure=_EIGHT_CONNECTED)
    if count == 0:
        return [], 0.0
    areas = np.bincount(labels.ravel(), minlength=count + 1)[1:]
    slices = ndimage.find_objects(labels)
    total = mask_small.size
    largest = float(areas.max()) / total
    # Each small pixel covers the same full-resolution area, so area fractions are exact at either resolution.
    kept = [(int(areas[i]), slices[i]) for i in range(count) if areas[i] / total >= min_area_fraction]
    kept.sort(key=lambda item: (-item[0], item[1][0].start, item[1][1].start))
    return kept, largest


def component_boxes(
    mask_small: np.ndarray,
    full_shape: tuple[int, int],
    *,
    component_class: int | None = 1,
    min_area_fraction: float = 0.002,
    margin_fraction: float = 0.08,
    min_margin: int = 16,
) -> list[Box]:
    """Full-resolution boxes of the connected components of the segmentation, largest first.

    Args:
        mask_small: ``(h, w)`` label map from the segmenter (any integer dtype).
        full_shape: ``(H, W)`` of the camera frame the mask was predicted from.
        component_class: Label of the component; ``None`` takes every non-zero label.
        min_area_fraction: Components covering less than this fraction of the frame are dropped (specks,
            debris, segmentation noise).
        margin_fraction: Relative margin, see :func:`margin_for`.
        min_margin: Minimum margin in full-resolution pixels.

    Returns:
        One box per kept component (8-connected), each grown by its own margin and clipped to the frame.
    """
    h, w, big_h, big_w = _check_shapes(mask_small, full_shape)
    kept, _ = _components(mask_small, component_class, min_area_fraction)
    boxes = []
    for _, (rows, cols) in kept:
        raw = small_to_full_box((rows.start, rows.stop), (cols.start, cols.stop), (h, w), (big_h, big_w))
        boxes.append(expand_box(raw, (big_h, big_w), margin_fraction, min_margin))
    return boxes


def crop_region(
    mask_small: np.ndarray,
    full_shape: tuple[int, int],
    *,
    component_class: int | None = 1,
    min_area_fraction: float = 0.002,
    margin_fraction: float = 0.08,
    min_margin: int = 16,
    max_components: int | None = None,
) -> CropRegion:
    """The one box per frame that the detector scores: all kept components together, with one margin.

    The box is the bounding box of the kept components' pixels, grown by the margin of *that* box (not the
    union of the per-component boxes of :func:`component_boxes`, whose margins are each component's own). For
    a single component both are the same; for several, this matches the synthetic generator's rule applied to
    the whole region mask.

    Args:
        mask_small, full_shape, component_class, min_area_fraction, margin_fraction, min_margin: As in
            :func:`component_boxes`.
        max_components: Keep only this many of the largest components (``1`` when a frame holds exactly one
            part, so a false-positive speck elsewhere cannot stretch the box); ``None`` keeps all of them.

    Returns:
        A :class:`CropRegion`; ``status == "no_component"`` (and ``box is None``) when nothing is kept.
    """
    h, w, big_h, big_w = _check_shapes(mask_small, full_shape)
    kept, largest = _components(mask_small, component_class, min_area_fraction)
    if max_components is not None:
        if max_components < 1:
            raise ValueError(f"max_components must be positive or None, got {max_components}")
        dropped = len(kept) - max_components
        kept = kept[:max_components]
    else:
        dropped = 0
    what = "non-zero labels" if component_class is None else f"class {component_class}"
    if not kept:
        if largest == 0.0:
            reason = f"the segmentation holds no pixel of {what}"
        else:
            reason = (
                f"no component of {what} covers at least {100 * min_area_fraction:.2g}% of the frame "
                f"(largest: {100 * largest:.2g}%)"
            )
        return CropRegion(None, "no_component", reason, 0)
    raw = union_box(
        [
            small_to_full_box((rows.start, rows.stop), (cols.start, cols.stop), (h, w), (big_h, big_w))
            for _, (rows, cols) in kept
        ]
    )
    assert raw is not None
    box = expand_box(raw, (big_h, big_w), margin_fraction, min_margin)
    reason = (
        f"{len(kept)} component(s) of {what}; largest covers {100 * kept[0][0] / mask_small.size:.3g}% of the "
        f"frame; margin {margin_for(raw, margin_fraction, min_margin)} px"
        + (f"; {dropped} smaller component(s) left out (max_components={max_components})" if dropped > 0 else "")
    )
    return CropRegion(box, "ok", reason, len(kept))


def crop_image(frame: np.ndarray, box: Box) -> np.ndarray:
    """``frame[y0:y1, x0:x1]`` (a view), checking that the box lies inside the frame."""
    if box.y1 > frame.shape[0] or box.x1 > frame.shape[1] or box.y0 < 0 or box.x0 < 0:
        raise ValueError(f"{box} does not fit in a frame of shape {frame.shape[:2]}")
    return frame[box.slices]


def resize_heatmap_to_box(crop_map: np.ndarray, box: Box) -> np.ndarray:
    """Bilinearly resize a crop's heat map to the crop box's full-resolution size.

    Sampling follows the pixel-centre convention (``align_corners=False`` in torch, OpenCV's ``INTER_LINEAR``):
    output pixel ``y`` samples the input at ``(y + 0.5) * h / H - 0.5``, clamped to the edge. A map that
    already has the box's size is returned as float32 unchanged.

    Args:
        crop_map: ``(h, w)`` float map over the crop (e.g. the detector's anomaly map at its input size).
        box: The crop's box.

    Returns:
        ``(box.height, box.width)`` float32 map.
    """
    crop_map = np.asarray(crop_map, dtype=np.float32)
    if crop_map.ndim != 2:
        raise ValueError(f"crop_map must be a 2-D map, got shape {crop_map.shape}")
    h, w = crop_map.shape
    if (h, w) == box.shape:
        return crop_map.copy()
    if box.area == 0:
        return np.zeros(box.shape, dtype=np.float32)
    rows = np.clip((np.arange(box.height, dtype=np.float64) + 0.5) * h / box.height - 0.5, 0, h - 1)
    cols = np.clip((np.arange(box.width, dtype=np.float64) + 0.5) * w / box.width - 0.5, 0, w - 1)
    r0 = np.floor(rows).astype(np.int64)
    c0 = np.floor(cols).astype(np.int64)
    r1, c1 = np.minimum(r0 + 1, h - 1), np.minimum(c0 + 1, w - 1)
    fr = (rows - r0).astype(np.float32)[:, None]
    fc = (cols - c0).astype(np.float32)[None, :]
    # Separable: along columns on the h input rows first, then along rows.
    across = crop_map[:, c0] * (1 - fc) + crop_map[:, c1] * fc
    return (across[r0] * (1 - fr) + across[r1] * fr).astype(np.float32)


def paste_heatmap(
    full_shape: tuple[int, int], box: Box, crop_map: np.ndarray, dtype: np.dtype | type = np.float16
) -> np.ndarray:
    """Full-frame heat map: the crop's map resized into ``box``, zeros elsewhere.

    Args:
        full_shape: ``(H, W)`` of the frame.
        box: Where the crop came from.
        crop_map: ``(h, w)`` map over the crop, any size (resized with :func:`resize_heatmap_to_box`).
        dtype: Output dtype (float16 halves storage; scores above 65504 would overflow it).

    Returns:
        ``(H, W)`` map of ``dtype``.
    """
    big_h, big_w = int(full_shape[0]), int(full_shape[1])
    if box.y0 < 0 or box.x0 < 0 or box.y1 > big_h or box.x1 > big_w:
        raise ValueError(f"{box} does not fit in a frame of shape {(big_h, big_w)}")
    out = np.zeros((big_h, big_w), dtype=dtype)
    out[box.slices] = resize_heatmap_to_box(crop_map, box)
    return out
