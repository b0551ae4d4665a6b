"""Region cropping: low-res mask to full-res box, and crop heat map back into the frame."""

from __future__ import annotations

import numpy as np
import pytest

from models.cropping import (
    Box,
    component_boxes,
    crop_box,
    crop_image,
    crop_region,
    margin_for,
    paste_heatmap,
    resize_heatmap_to_box,
    small_to_full_box,
    union_box,
)


def test_rectangle_gives_expected_box_with_margin() -> None:
    # Small mask 100x150 of a 1000x1500 frame: scale exactly 10.
    mask = np.zeros((100, 150), np.uint8)
    mask[20:60, 30:110] = 1  # full res rows [200, 600), cols [300, 1100): 400 x 800
    (box,) = component_boxes(mask, (1000, 1500))
    margin = max(16, round(0.08 * 800))  # 64
    assert box == Box(200 - margin, 300 - margin, 600 + margin, 1100 + margin)
    region = crop_region(mask, (1000, 1500))
    assert region.status == "ok" and region.box == box and region.n_components == 1


def test_small_parts_use_the_minimum_margin_and_boxes_clip_at_borders() -> None:
    mask = np.zeros((64, 64), np.uint8)
    mask[0:10, 58:64] = 1  # touches the top and right borders; 1x scale
    (box,) = component_boxes(mask, (64, 64), min_area_fraction=0.0)
    assert margin_for(Box(0, 58, 10, 64)) == 16
    assert box == Box(0, 58 - 16, 10 + 16, 64)


def test_non_integer_scale_factors_cover_the_exact_footprint() -> None:
    # 7 small rows -> 20 full rows (scale 20/7), 9 small cols -> 31 full cols (31/9).
    small_rows, small_cols = (2, 5), (3, 4)
    box = small_to_full_box(small_rows, small_cols, (7, 9), (20, 31))
    # rows [2*20/7, 5*20/7) = [5.714, 14.286) -> [5, 15); cols [3*31/9, 4*31/9) = [10.33, 13.78) -> [10, 14)
    assert box == Box(5, 10, 15, 14)
    # And it is the smallest such box: nearest-upsampling the mask never lands outside it.
    mask = np.zeros((7, 9), np.uint8)
    mask[2:5, 3:4] = 1
    rows = (np.arange(20) + 0.5) * 7 / 20
    cols = (np.arange(31) + 0.5) * 9 / 31
    upsampled = mask[rows.astype(int)][:, cols.astype(int)]
    ys, xs = np.nonzero(upsampled)
    assert box.y0 <= ys.min() and ys.max() < box.y1 and box.x0 <= xs.min() and xs.max() < box.x1
    (expanded,) = component_boxes(mask, (20, 31), min_area_fraction=0.0, min_margin=0, margin_fraction=0.0)
    assert expanded == box


def test_noise_below_min_area_is_dropped_and_largest_comes_first() -> None:
    mask = np.zeros((200, 200), np.uint8)
    mask[50:150, 40:120] = 1  # 8000 px = 20 % of the frame
    mask[10:40, 160:190] = 1  # 900 px = 2.25 %
    mask[190, 5] = 1  # 1 px speck = 0.0025 %, below 0.2 %
    mask[180:182, 150:152] = 1  # 4 px = 0.01 %
    boxes = component_boxes(mask, (400, 400))
    assert len(boxes) == 2
    assert boxes[0].area > boxes[1].area
    region = crop_region(mask, (400, 400))
    assert region.n_components == 2
    raw = Box(20, 80, 300, 380)  # union of the two kept components at 2x scale
    margin = max(16, round(0.08 * 300))
    assert margin == 24
    assert region.box == Box(max(0, raw.y0 - margin), raw.x0 - margin, raw.y1 + margin, min(400, raw.x1 + margin))
    assert region.box == Box(0, 56, 324, 400)
    largest = crop_region(mask, (400, 400), max_components=1)
    assert largest.n_components == 1 and largest.box == boxes[0] and "left out" in largest.reason


def test_diagonal_pixels_join_one_component_and_other_classes_are_ignored() -> None:
    mask = np.zeros((10, 10), np.uint8)
    mask[2, 2] = mask[3, 3] = mask[4, 4] = 1
    mask[8, 8] = 2
    assert len(component_boxes(mask, (10, 10), min_area_fraction=0.0, min_margin=0)) == 1
    assert len(component_boxes(mask, (10, 10), component_class=None, min_area_fraction=0.0, min_margin=0)) == 2


def test_empty_or_tiny_mask_reports_no_component() -> None:
    empty = crop_region(np.zeros((32, 32), np.uint8), (320, 320))
    assert empty.status == "no_component" and empty.box is None and empty.n_components == 0
    assert "no pixel" in empty.reason
    speck = np.zeros((32, 32), np.uint8)
    speck[5, 5] = 1
    tiny = crop_region(speck, (320, 320), min_area_fraction=0.01)
    assert tiny.status == "no_component" and "largest" in tiny.reason


def test_union_box() -> None:
    assert union_box([]) is None
    assert union_box([Box(1, 2, 3, 4), Box(0, 5, 2, 9)]) == Box(0, 2, 3, 9)
    with pytest.raises(ValueError, match="reversed"):
        Box(5, 0, 1, 1)
    assert Box.from_dict(Box(1, 2, 3, 4).to_dict()) == Box(1, 2, 3, 4)


def test_paste_lands_exactly_where_the_crop_came_from() -> None:
    frame = np.zeros((300, 400), np.float32)
    box = Box(37, 91, 37 + 120, 91 + 150)
    pattern = np.arange(box.area, dtype=np.float32).reshape(box.shape) / box.area
    frame[box.slices] = pattern
    crop = crop_image(frame, box)
    pasted = paste_heatmap(frame.shape, box, crop, dtype=np.float32)
    assert np.array_equal(pasted, frame)
    outside = np.ones(frame.shape, bool)
    outside[box.slices] = False
    assert not pasted[outside].any()
    assert paste_heatmap(frame.shape, box, crop).dtype == np.float16


def test_heatmap_is_resized_to_the_box_bilinearly() -> None:
    box = Box(10, 20, 10 + 8, 20 + 12)
    constant = resize_heatmap_to_box(np.full((4, 6), 0.25, np.float32), box)
    assert constant.shape == (8, 12) and np.allclose(constant, 0.25)
    # A map that is hot in its right half stays hot in the right half of the box.
    halves = np.zeros((4, 6), np.float32)
    halves[:, 3:] = 1.0
    resized = resize_heatmap_to_box(halves, box)
    assert np.allclose(resized[:, :5], 0.0) and np.allclose(resized[:, 7:], 1.0)
    # Linear ramps stay linear inside (pixel-centre sampling): 2x upsampling of [0, 1, 2, 3].
    ramp = resize_heatmap_to_box(np.array([[0.0, 1.0, 2.0, 3.0]], np.float32), Box(0, 0, 1, 8))
    assert np.allclose(ramp[0], [0.0, 0.25, 0.75, 1.25, 1.75, 2.25, 2.75, 3.0])
    pasted = paste_heatmap((40, 50), box, halves)
    assert pasted.shape == (40, 50) and pasted[box.y0 : box.y1, box.x1 - 1] == pytest.approx(1.0)
    assert not pasted[:, : box.x0].any() and not pasted[box.y1 :].any()


def test_paste_rejects_boxes_outside_the_frame() -> None:
    with pytest.raises(ValueError, match="does not fit"):
        paste_heatmap((10, 10), Box(0, 0, 11, 5), np.zeros((4, 4)))


@pytest.mark.parametrize("scale", [1, 2, 4])
def test_same_box_as_the_synthetic_generators_crop_rule(scale: int) -> None:
    rng = np.random.default_rng(scale)
    for _ in range(20):
        small = np.zeros((48, 64), np.uint8)
        y, x = rng.integers(0, 40), rng.integers(0, 56)
        small[y : y + rng.integers(4, 20), x : x + rng.integers(4, 30)] = 1
        full = np.kron(small, np.ones((scale, scale), np.uint8))  # exact upsampling at an integer scale
        expected = crop_box(full)
        region = crop_region(small, full.shape, min_area_fraction=0.0)
        assert region.box is not None and expected is not None
        assert (region.box.y0, region.box.x0, region.box.y1, region.box.x1) == tuple(expected)
