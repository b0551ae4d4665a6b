"""The zarr store of frames and heatmaps.

Layout (zarr format 3, one group per shift)::

    store.zarr/shifts/<shift>/images/<image_id>     (y, x, c) uint8|uint16, zstd, chunks <= 1024x1024
    store.zarr/shifts/<shift>/heatmaps/<image_id>   (y, x) float16, chunked like the image

Arrays are written whole by one worker each, so concurrent writers never touch the same chunk. Each array carries
the SHA-256 of its full pixel content in its attribute ``pixel_sha256``, taken when it is written: zarr reads a
missing chunk as its fill value without complaint, and the checksum is what tells a damaged frame from a black one.

Every location is a zarr location: a local folder or an fsspec URL (``s3://bucket/store.zarr``, ``memory://...``).
Nothing here lists or tests folders itself, so another backend needs no change outside this module.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from zarr.codecs import ZstdCodec

MAX_CHUNK = 1024
_COMPRESSOR = ZstdCodec(level=3)
CHECKSUM_ATTRIBUTE = "pixel_sha256"
#: fsspec URLs of the local filesystem (``file:///shared/store.zarr``).
LOCAL_URL_PREFIXES = ("file://", "local://")


class DamagedArray(Exception):
    """A stored frame or heatmap whose pixels differ from the checksum written with them; the message says what."""


def pixel_digest(pixels: np.ndarray) -> str:
    """SHA-256 of an array's shape, dtype and C-order bytes."""
    digest = hashlib.sha256(f"{pixels.shape}{pixels.dtype.str}".encode())
    digest.update(np.ascontiguousarray(pixels).data)
    return digest.hexdigest()


def check_pixels(array: zarr.Array, pixels: np.ndarray) -> str | None:
    """Why ``pixels`` (read from ``array``) are not what was written, or ``None`` when they match.

    Arrays written before checksums were recorded have nothing to check against and pass.
    """
    expected = array.attrs.get(CHECKSUM_ATTRIBUTE)
    if expected is None or pixel_digest(pixels) == expected:
        return None
    return "stored pixels do not match the checksum written with them (a chunk is missing or damaged)"


def chunk_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
    """Chunks no larger than 1024x1024 in y and x, the full extent in any further dimension."""
    return (min(shape[0], MAX_CHUNK), min(shape[1], MAX_CHUNK), *shape[2:])


class FrameStore:
    """Read and write a workspace's frames and heatmaps.

    Args:
        path: The store's location: a ``store.zarr`` folder or an fsspec URL (created on first write).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = str(path).rstrip("/")
        # fsspec's local filesystem creates no parent folders unless asked; zarr's own folder store does
        self._storage_options = {"auto_mkdir": True} if self.path.startswith(LOCAL_URL_PREFIXES) else None

    def _group(self, location: str, mode: str) -> zarr.Group:
        """A group of the store, opened the one way every location is (a folder or an fsspec URL)."""
        return zarr.open_group(location, mode=mode, storage_options=self._storage_options)

    def _array(self, location: str) -> zarr.Array:
        """An array of the store, opened read-only the same way."""
        return zarr.open_array(location, mode="r", storage_options=self._storage_options)

    def shift_path(self, shift_id: str, kind: str | None = None, image_id: str | None = None) -> str:
        """Where a shift's arrays live: ``shifts/<shift>``, its ``images`` or ``heatmaps`` group, or one array."""
        return "/".join(part for part in (self.path, "shifts", shift_id, kind, image_id) if part)

    def _root(self, mode: str = "a") -> zarr.Group:
        return self._group(self.path, mode)

    def ensure_shift(self, shift_id: str, source: str | None = None) -> None:
        """Create the shift's groups up front, so workers only ever create arrays; remember the source folder."""
        root = self._root("a")
        shift = root.require_group(f"shifts/{shift_id}")
        shift.require_group("images")
        shift.require_group("heatmaps")
        if source is not None and shift.attrs.get("source") != source:
            shift.attrs["source"] = source

    def shift_source(self, shift_id: str) -> str | None:
        """The folder the shift was last ingested from, if recorded."""
        if not self.has_shift(shift_id):
            return None
        return self._group(self.shift_path(shift_id), "r").attrs.get("source")

    def has_shift(self, shift_id: str) -> bool:
        """Whether any frame of ``shift_id`` was ever ingested."""
        return self._images(shift_id) is not None

    def _images(self, shift_id: str) -> zarr.Group | None:
        """The shift's ``images`` group, or ``None`` when it was never created."""
        try:
            return self._group(self.shift_path(shift_id, "images"), "r")
        except FileNotFoundError:  # zarr's GroupNotFoundError is one
            return None

    def write_image(self, shift_id: str, image_id: str, pixels: np.ndarray, attributes: dict[str, Any]) -> None:
        """Write one frame whole (overwriting a partial array a killed worker may have left), with its checksum."""
        group = self._group(self.shift_path(shift_id, "images"), "a")
        array = group.create_array(
            image_id,
            shape=pixels.shape,
            dtype=pixels.dtype,
            chunks=chunk_shape(pixels.shape),
            compressors=_COMPRESSOR,
            dimension_names=("y", "x", "c"),
            attributes={**attributes, CHECKSUM_ATTRIBUTE: pixel_digest(pixels)},
            overwrite=True,
        )
        array[...] = pixels

    def image(self, shift_id: str, image_id: str) -> zarr.Array:
        """The frame array, opened read-only (pixels are read lazily)."""
        return self._array(self.shift_path(shift_id, "images", image_id))

    def read_image(self, shift_id: str, image_id: str) -> np.ndarray:
        """All pixels of one frame, checked against the checksum written at ingest.

        Raises:
            DamagedArray: The pixels differ from what was written (a chunk is missing or damaged).
        """
        array = self.image(shift_id, image_id)
        pixels = array[...]
        problem = check_pixels(array, pixels)
        if problem:
            raise DamagedArray(
                f"frame {image_id} of shift {shift_id}: {problem}; run 'defectflow verify --shift {shift_id}' "
                "and re-run the ingest to restore it from its source"
            )
        return pixels

    def array_problem(self, shift_id: str, kind: str, image_id: str) -> str | None:
        """What is wrong with a stored frame (``kind="images"``) or heatmap (``"heatmaps"``), or ``None``.

        Missing arrays, unreadable chunks and pixels that differ from their checksum are problems; an array
        written before checksums were recorded is checked for readability only.
        """
        try:
            array = self._array(self.shift_path(shift_id, kind, image_id))
        except Exception as error:
            return f"missing or unreadable array ({type(error).__name__}: {error})"
        try:
            pixels = array[...]
        except Exception as error:
            return f"unreadable chunk ({type(error).__name__}: {error})"
        return check_pixels(array, pixels)

    def image_ids(self, shift_id: str) -> list[str]:
        """Ids of the frames stored for a shift, sorted."""
        images = self._images(shift_id)
        return sorted(images.array_keys()) if images is not None else []

    def write_heatmap(
        self,
        shift_id: str,
        image_id: str,
        shape: tuple[int, int],
        box: tuple[int, int, int, int] | None,
        crop_map: np.ndarray | None,
        attributes: dict[str, Any],
    ) -> np.ndarray:
        """Write a full-resolution float16 heatmap: ``crop_map`` inside ``box``, zero elsewhere; returns it as stored,
        for a caller that draws it next (no read back).

        Only the chunks that ``box`` touches are written; the rest stay the fill value (0), so a heatmap costs
        storage in proportion to the scored region, not the frame. The checksum covers the whole map.
        """
        full = np.zeros(shape, dtype=np.float16)
        if box is not None and crop_map is not None:
            y0, x0, y1, x1 = box
            full[y0:y1, x0:x1] = crop_map
        group = self._group(self.shift_path(shift_id, "heatmaps"), "a")
        array = group.create_array(
            image_id,
            shape=shape,
            dtype="float16",
            chunks=chunk_shape(shape),
            compressors=_COMPRESSOR,
            dimension_names=("y", "x"),
            fill_value=0.0,
            attributes={**attributes, CHECKSUM_ATTRIBUTE: pixel_digest(full)},
            overwrite=True,
        )
        if box is not None and crop_map is not None:
            array[y0:y1, x0:x1] = full[y0:y1, x0:x1]
        return full

    def heatmap(self, shift_id: str, image_id: str) -> zarr.Array:
        """The heatmap array, opened read-only."""
        return self._array(self.shift_path(shift_id, "heatmaps", image_id))
