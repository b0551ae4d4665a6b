"""The zarr store of frames and heatmaps.

Layout (zarr format 3, one group per shift)::

    store.zarr/shifts/<shift>/images/<image_id>     (y, x, c) uint8|uint16, zstd, chunks <= 1024x1024
    store.zarr/shifts/<shift>/heatmaps/<image_id>   (y, x) float16, chunked like the image

Arrays are written whole by one worker each, so concurrent writers never touch the same chunk.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import zarr
from zarr.codecs import ZstdCodec

MAX_CHUNK = 1024
_COMPRESSOR = ZstdCodec(level=3)


def chunk_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
    """Chunks no larger than 1024x1024 in y and x, the full extent in any further dimension."""
    return (min(shape[0], MAX_CHUNK), min(shape[1], MAX_CHUNK), *shape[2:])


class FrameStore:
    """Read and write a workspace's frames and heatmaps.

    Args:
        path: The ``store.zarr`` directory (created on first write).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def _root(self, mode: str = "a") -> zarr.Group:
        return zarr.open_group(self.path, mode=mode)

    def ensure_shift(self, shift_id: str) -> None:
        """Create the shift's groups up front, so workers only ever create arrays."""
        root = self._root("a")
        shift = root.require_group(f"shifts/{shift_id}")
        shift.require_group("images")
        shift.require_group("heatmaps")

    def has_shift(self, shift_id: str) -> bool:
        """Whether any frame of ``shift_id`` was ever ingested."""
        return (self.path / "shifts" / shift_id / "images").is_dir()

    def write_image(self, shift_id: str, image_id: str, pixels: np.ndarray, attributes: dict[str, Any]) -> None:
        """Write one frame whole (overwriting a partial array a killed worker may have left)."""
        group = zarr.open_group(self.path / "shifts" / shift_id / "images", mode="a")
        array = group.create_array(
            image_id,
            shape=pixels.shape,
            dtype=pixels.dtype,
            chunks=chunk_shape(pixels.shape),
            compressors=_COMPRESSOR,
            dimension_names=("y", "x", "c"),
            attributes=attributes,
            overwrite=True,
        )
        array[...] = pixels

    def image(self, shift_id: str, image_id: str) -> zarr.Array:
        """The frame array, opened read-only (pixels are read lazily)."""
        return zarr.open_array(self.path / "shifts" / shift_id / "images" / image_id, mode="r")

    def read_image(self, shift_id: str, image_id: str) -> np.ndarray:
        """All pixels of one frame."""
        return self.image(shift_id, image_id)[...]

    def image_ids(self, shift_id: str) -> list[str]:
        """Ids of the frames stored for a shift, sorted."""
        images = self.path / "shifts" / shift_id / "images"
        if not images.is_dir():
            return []
        return sorted(p.name for p in images.iterdir() if (p / "zarr.json").is_file())

    def write_heatmap(
        self,
        shift_id: str,
        image_id: str,
        shape: tuple[int, int],
        box: tuple[int, int, int, int] | None,
        crop_map: np.ndarray | None,
        attributes: dict[str, Any],
    ) -> None:
        """Write a full-resolution float16 heatmap: ``crop_map`` inside ``box``, zero elsewhere.

        Only the chunks that ``box`` touches are written; the rest stay the fill value (0), so a heatmap costs
        storage in proportion to the scored region, not the frame.
        """
        group = zarr.open_group(self.path / "shifts" / shift_id / "heatmaps", mode="a")
        array = group.create_array(
            image_id,
            shape=shape,
            dtype="float16",
            chunks=chunk_shape(shape),
            compressors=_COMPRESSOR,
            dimension_names=("y", "x"),
            fill_value=0.0,
            attributes=attributes,
            overwrite=True,
        )
        if box is not None and crop_map is not None:
            y0, x0, y1, x1 = box
            array[y0:y1, x0:x1] = crop_map.astype(np.float16, copy=False)

    def heatmap(self, shift_id: str, image_id: str) -> zarr.Array:
        """The heatmap array, opened read-only."""
        return zarr.open_array(self.path / "shifts" / shift_id / "heatmaps" / image_id, mode="r")
