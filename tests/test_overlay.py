"""The one drawing of heatmaps shared by the review app and the report (storage/overlay.py)."""

from __future__ import annotations

import numpy as np

from storage.overlay import (
    COLOUR_MAP,
    CONTOUR_INDEX,
    CONTOUR_LEVEL,
    colour_bar_css,
    contour_layer,
    contour_mask,
    heat_layer,
    heat_levels,
    side_by_side,
)


def _disc(size: int = 64, radius: float = 12.0) -> np.ndarray:
    yy, xx = np.mgrid[:size, :size]
    distance = np.hypot(yy - size / 2, xx - size / 2)
    return np.clip(1.0 - distance / (2 * radius), 0.0, 1.0).astype(np.float16)  # 0.5 exactly at ``radius``


def test_levels_put_the_pixel_threshold_exactly_at_the_contour_index() -> None:
    below = np.nextafter(np.float16(CONTOUR_LEVEL), np.float16(0))
    values = np.array([0.0, below, CONTOUR_LEVEL, 1.0, np.nan, 2.0], dtype=np.float16)
    levels = heat_levels(values)
    assert list(levels >= CONTOUR_INDEX) == [False, False, True, True, False, True]
    assert list(heat_levels(values.astype(np.float32))) == list(levels)  # same levels from any float type
    assert levels[0] == 0 and levels[3] == 255


def test_contour_follows_the_pixel_threshold_level_and_not_the_picture_border() -> None:
    heat = _disc()
    edge = contour_mask(heat_levels(heat), width=1)
    yy, xx = np.nonzero(edge)
    radii = np.hypot(yy - 32, xx - 32)
    assert edge.any() and radii.min() >= 10.0 and radii.max() <= 12.5
    assert not (heat[edge] < CONTOUR_LEVEL).any()  # drawn on the inside of the threshold
    assert not contour_mask(np.full((8, 8), 255, np.uint8)).any()  # a region filling the view: no outline at the cut


def test_colour_map_gets_brighter_and_layers_are_transparent_where_nothing_was_scored() -> None:
    brightness = COLOUR_MAP.astype(float) @ [0.299, 0.587, 0.114]
    assert (np.diff(brightness) >= -1.0).all() and brightness[-1] > 200 > 20 > brightness[0]
    heat = np.zeros((10, 10), dtype=np.float16)
    heat[2:8, 2:8] = 0.7
    heat[4, 4] = 0.2
    alpha = np.asarray(heat_layer(heat_levels(heat)).convert("RGBA"))[..., 3]
    assert (alpha[heat == 0] == 0).all() and (alpha[heat >= CONTOUR_LEVEL] == 255).all()
    assert 0 < alpha[4, 4] < 255  # faint below the threshold
    assert np.asarray(contour_layer(heat_levels(heat)).convert("RGBA"))[..., 3].any()
    assert colour_bar_css().startswith("linear-gradient(")


def test_side_by_side_shows_three_panels_of_one_height() -> None:
    frame = np.full((300, 400, 3), 90, dtype=np.uint8)
    heat = np.zeros((300, 400), dtype=np.float16)
    heat[100:200, 100:220] = 0.3
    heat[140:160, 150:170] = 0.9
    sheet = np.asarray(side_by_side(frame, heat, (100, 100, 200, 220), height=120))
    assert sheet.shape[0] == 120 and sheet.shape[1] > 3 * 120
    assert (np.abs(sheet.astype(int) - [0, 255, 255]).sum(axis=-1) < 60).any()  # the cyan contour is drawn
