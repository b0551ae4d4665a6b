"""Finding and decoding the frame files a camera line writes.

Decoding is defensive: a file is refused (quarantined) with a reason instead of crashing the shift, and a
decompression bomb is refused from its header, before any pixel is decoded.
"""

from __future__ import annotations

import hashlib
import io
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp"})
_TIFF_SUFFIXES = frozenset({".tif", ".tiff"})


class FrameRejected(Exception):
    """A file that cannot become a frame; ``str(error)`` is the reason written to the manifest."""


@dataclass
class DecodedFrame:
    """Pixels of one frame as (y, x, c) with the source's dtype, and what was done to get there."""

    pixels: np.ndarray
    conversions: list[str] = field(default_factory=list)


def list_source_files(root: Path) -> list[str]:
    """Every file and symbolic link below ``root`` except dotfiles and dot-folders, as sorted POSIX paths.

    Every listed entry gets a manifest row, images or not, so that nothing a camera wrote vanishes silently;
    links to folders are listed (and quarantined) but not followed, so a link loop or a second path to the
    same frames cannot ingest anything twice.
    """
    found: list[str] = []
    for path in root.rglob("*"):
        relative = path.relative_to(root)
        if any(part.startswith(".") for part in relative.parts):
            continue
        if path.is_file() or path.is_symlink():
            found.append(relative.as_posix())
    return sorted(found)


def vanished_reason() -> str:
    """Quarantine reason of a file that was listed but is gone when it is read."""
    return "vanished: the file was removed after the shift was listed; re-run the ingest if it comes back"


def not_a_file_reason(path: Path) -> str | None:
    """Why a listed entry cannot be read as a file (link to a folder, dangling link, gone), or ``None``."""
    if path.is_symlink() and path.is_dir():
        return f"symbolic link to a folder ({os.readlink(path)}), not followed; ingest the folder it points to"
    if path.is_symlink() and not path.exists():
        return f"dangling symbolic link to {os.readlink(path)} (the target does not exist)"
    if not path.exists():
        return vanished_reason()
    return None


def sha256_of(path: Path) -> str:
    """Hex SHA-256 of a file, read in blocks so memory stays flat."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _check_pixel_budget(width: int, height: int, max_pixels: int) -> None:
    if width * height > max_pixels:
        raise FrameRejected(
            f"header declares {width}x{height} = {width * height:,} pixels, above the limit of {max_pixels:,} "
            "(possible decompression bomb; raise DEFECTFLOW_MAX_PIXELS or --max-pixels if the frame is genuine)"
        )


def _pages_note(count: int) -> str:
    return f"first of {count} pages kept"


def _from_tifffile(data: bytes, max_pixels: int) -> DecodedFrame | None:
    """16-bit colour TIFFs, which Pillow would reduce to 8 bit; ``None`` means Pillow can decode the file."""
    import tifffile

    try:
        with tifffile.TiffFile(io.BytesIO(data)) as tif:
            page = tif.pages[0]
            shape, dtype = page.shape, page.dtype
            if not (dtype == np.uint16 and len(shape) == 3 and shape[-1] in (3, 4)):
                return None
            _check_pixel_budget(shape[1], shape[0], max_pixels)
            pixels = page.asarray()
            pages = len(tif.pages)
    except FrameRejected:
        raise
    except Exception:
        return None  # let Pillow report what is wrong with the file
    conversions = ["16-bit colour TIFF decoded with tifffile (Pillow would reduce it to 8 bit)"]
    if pages > 1:
        conversions.append(_pages_note(pages))
    if pixels.shape[-1] == 4:
        pixels = pixels[..., :3]
        conversions.append("alpha channel dropped")
    return DecodedFrame(np.ascontiguousarray(pixels), conversions)


# Pillow unpacks 16-bit colour PNG samples to 8 bit: the big-endian rawmode keeps each sample's high byte, the
# little-endian one (same bits per pixel, so the same PNG unfiltering) keeps the low byte. Two decodes give both.
_PNG16_RAWMODES = {"RGB;16B": ("RGB", "RGB;16L"), "RGBA;16B": ("RGBA", "RGBA;16L")}


def _png16_byte(data: bytes, rawmode: str) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as image:
        image.tile = [tile._replace(args=rawmode) for tile in image.tile]
        image.load()
        return np.asarray(ImageOps.exif_transpose(image))


def _from_png16(data: bytes, rawmode: str, conversions: list[str]) -> np.ndarray:
    """All 16 bits of a 16-bit colour PNG as (y, x, 3) uint16 (Pillow alone would keep the high byte)."""
    _, low_rawmode = _PNG16_RAWMODES[rawmode]
    high = _png16_byte(data, rawmode).astype(np.uint16)
    low = _png16_byte(data, low_rawmode)
    pixels = (high << 8) | low
    if pixels.shape[-1] == 4:
        conversions.append("alpha channel dropped")
        pixels = pixels[..., :3]
    return np.ascontiguousarray(pixels)


def _to_array(image: Image.Image, conversions: list[str]) -> np.ndarray:
    mode = image.mode
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in image.info):
        conversions.append("alpha channel dropped")
        image = image.convert("L" if mode == "LA" else "RGB")
    elif mode == "P":
        conversions.append("palette expanded to RGB")
        image = image.convert("RGB")
    elif mode == "1":
        conversions.append("1-bit image expanded to 8-bit grey (0/255)")
        image = image.convert("L")
    elif mode in ("CMYK", "YCbCr", "LAB", "HSV"):
        conversions.append(f"{mode} converted to RGB")
        image = image.convert("RGB")
    elif mode.startswith("I;16"):
        return np.asarray(image).astype(np.uint16, copy=False)[..., None]
    elif mode == "I":
        values = np.asarray(image)
        if values.min() < 0 or values.max() > 65535:
            raise FrameRejected("32-bit integer pixels outside the 16-bit range; export frames as 8 or 16 bit")
        conversions.append("32-bit integer container narrowed to uint16 (values fit)")
        return values.astype(np.uint16)[..., None]
    elif mode == "F":
        raise FrameRejected("32-bit float pixels are not supported; export frames as 8 or 16 bit")
    pixels = np.asarray(image)
    if pixels.ndim == 2:
        pixels = pixels[..., None]
    return np.ascontiguousarray(pixels)


def _read_source(path: Path, expected_sha256: str | None) -> bytes:
    """The file's bytes, read once, so that what is decoded is what was hashed."""
    try:
        data = path.read_bytes()
    except FileNotFoundError as error:
        raise FrameRejected(vanished_reason()) from error
    if expected_sha256 and hashlib.sha256(data).hexdigest() != expected_sha256:
        raise FrameRejected(
            "changed while being ingested (its bytes differ from the hash taken moments before); "
            "re-run the ingest once the camera has finished writing it"
        )
    return data


def decode_frame(path: Path, max_pixels: int, expected_sha256: str | None = None) -> DecodedFrame:
    """Decode one frame the way Pillow does, with the EXIF orientation applied.

    Grey frames become (y, x, 1), colour frames (y, x, 3); the dtype stays uint8 or uint16 (16-bit colour PNG
    and TIFF included). Alpha is dropped and every such change is listed in ``conversions``.

    Args:
        path: The source file.
        max_pixels: Frames whose header declares more pixels are refused before decoding.
        expected_sha256: The hash the file had when it was listed; other bytes now are refused.

    Raises:
        FrameRejected: With the reason, for empty, vanished, changed, truncated, unreadable, oversized or
            unsupported files.
    """
    if path.suffix.lower() not in IMAGE_SUFFIXES:
        raise FrameRejected(
            f"not a frame: extension {path.suffix or '(none)'!r} is not one of {', '.join(sorted(IMAGE_SUFFIXES))}"
        )
    data = _read_source(path, expected_sha256)
    if not data:
        raise FrameRejected("empty file (0 bytes)")
    if path.suffix.lower() in _TIFF_SUFFIXES:
        decoded = _from_tifffile(data, max_pixels)
        if decoded is not None:
            return decoded
    conversions: list[str] = []
    pillow_limit = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None  # our own, configurable check below runs on the header, before decoding
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            with Image.open(io.BytesIO(data)) as image:
                _check_pixel_budget(image.width, image.height, max_pixels)
                frames = getattr(image, "n_frames", 1)
                if frames > 1:
                    conversions.append(_pages_note(frames))
                rawmodes = {str(tile.args) for tile in image.tile}
                png16 = next(iter(rawmodes)) if image.format == "PNG" and rawmodes <= set(_PNG16_RAWMODES) else None
                if png16:
                    return DecodedFrame(_from_png16(data, png16, conversions), conversions)
                if any(";16" in mode for mode in rawmodes) and image.mode in ("RGB", "RGBA"):
                    conversions.append("16-bit colour reduced to 8 bit by Pillow")
                image.load()
                orientation = image.getexif().get(0x0112, 1)
                if orientation not in (None, 1):
                    image = ImageOps.exif_transpose(image)
                    conversions.append(f"EXIF orientation {orientation} applied")
                pixels = _to_array(image, conversions)
        except FrameRejected:
            raise
        except UnidentifiedImageError as error:
            raise FrameRejected("not a decodable image (the content does not match any image format)") from error
        except (OSError, SyntaxError, ValueError) as error:
            text = str(error)
            if "truncated" in text or "broken data stream" in text or "premature end" in text.lower():
                raise FrameRejected(f"truncated file ({text})") from error
            raise FrameRejected(f"unreadable image ({type(error).__name__}: {text})") from error
        finally:
            Image.MAX_IMAGE_PIXELS = pillow_limit
    if pixels.dtype not in (np.uint8, np.uint16):
        raise FrameRejected(f"unsupported pixel type {pixels.dtype}; export frames as 8 or 16 bit")
    return DecodedFrame(pixels, conversions)


class SourceError(ValueError):
    """The folder to ingest is missing, not a folder, or holds no files."""


def resolve_source_dir(source: str | Path) -> Path:
    """Absolute path of the folder a shift is ingested from, or a :class:`SourceError` saying what to fix."""
    path = Path(source).expanduser()
    if not path.exists():
        raise SourceError(f"source folder {path} does not exist; pass the folder the camera line wrote the frames to")
    if not path.is_dir():
        raise SourceError(f"source {path} is not a folder; pass the folder that holds the shift's frames")
    return path.resolve()
