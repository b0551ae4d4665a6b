"""One way to read an image, for ingest, training, evaluation and scoring alike.

A frame must reach a model as the same pixels whether it was ingested for scoring or read from a folder for
training, so the decoding rules live here once: EXIF orientation applied, 8 and 16 bit kept (16-bit colour PNG and
TIFF included, which Pillow alone would reduce to 8 bit), alpha dropped, palettes expanded, each change listed;
a decompression bomb is refused from its header. Scaling to ``[0, 1]``, RGB expansion and the ImageNet
normalisation every backbone here expects are here too.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

#: File suffixes (lower case) read as images everywhere: ingest, training folders, curated folders.
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp"})
_TIFF_SUFFIXES = frozenset({".tif", ".tiff"})
#: ImageNet channel statistics: what timm's backbones expect, pretrained or not.
IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)


class ImageRejected(ValueError):
    """Bytes that cannot become an image; ``str(error)`` is the reason (written to the ingest manifest)."""


@dataclass
class DecodedImage:
    """Pixels as (y, x, c) with the source's dtype (uint8 or uint16), and what was done to get there."""

    pixels: np.ndarray
    conversions: list[str] = field(default_factory=list)


def _check_pixel_budget(width: int, height: int, max_pixels: int) -> None:
    if width * height > max_pixels:
        raise ImageRejected(
            f"header declares {width}x{height} = {width * height:,} pixels, above the limit of {max_pixels:,} "
            "(possible decompression bomb; raise DEFECTFLOW_MAX_PIXELS or --max-pixels if the frame is genuine)"
        )


def _pages_note(count: int) -> str:
    return f"first of {count} pages kept"


def _from_tifffile(data: bytes, max_pixels: int) -> DecodedImage | None:
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
    except ImageRejected:
        raise
    except Exception:
        return None  # let Pillow report what is wrong with the file
    conversions = ["16-bit colour TIFF decoded with tifffile (Pillow would reduce it to 8 bit)"]
    if pages > 1:
        conversions.append(_pages_note(pages))
    if pixels.shape[-1] == 4:
        pixels = pixels[..., :3]
        conversions.append("alpha channel dropped")
    return DecodedImage(np.ascontiguousarray(pixels), conversions)


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
            raise ImageRejected("32-bit integer pixels outside the 16-bit range; export frames as 8 or 16 bit")
        conversions.append("32-bit integer container narrowed to uint16 (values fit)")
        return values.astype(np.uint16)[..., None]
    elif mode == "F":
        raise ImageRejected("32-bit float pixels are not supported; export frames as 8 or 16 bit")
    pixels = np.asarray(image)
    if pixels.ndim == 2:
        pixels = pixels[..., None]
    return np.ascontiguousarray(pixels)


def decode_image(data: bytes, suffix: str, max_pixels: int) -> DecodedImage:
    """Decode an image file's bytes the way Pillow does, with the EXIF orientation applied.

    Grey images become (y, x, 1), colour images (y, x, 3); the dtype stays uint8 or uint16 (16-bit colour PNG
    and TIFF included). Alpha is dropped and every such change is listed in ``conversions``.

    Args:
        data: The file's bytes.
        suffix: The file's suffix (``".png"``...), which decides the decoder.
        max_pixels: Images whose header declares more pixels are refused before decoding.

    Raises:
        ImageRejected: With the reason, for empty, truncated, unreadable, oversized or unsupported images.
    """
    if suffix.lower() not in IMAGE_SUFFIXES:
        raise ImageRejected(
            f"not a frame: extension {suffix or '(none)'!r} is not one of {', '.join(sorted(IMAGE_SUFFIXES))}"
        )
    if not data:
        raise ImageRejected("empty file (0 bytes)")
    if suffix.lower() in _TIFF_SUFFIXES:
        decoded = _from_tifffile(data, max_pixels)
        if decoded is not None:
            return decoded
    conversions: list[str] = []
    pixels = _decode_with_pillow(data, max_pixels, conversions)
    if pixels.dtype not in (np.uint8, np.uint16):
        raise ImageRejected(f"unsupported pixel type {pixels.dtype}; export frames as 8 or 16 bit")
    return DecodedImage(pixels, conversions)


def _decode_with_pillow(data: bytes, max_pixels: int, conversions: list[str]) -> np.ndarray:
    """Decode with Pillow under our own pixel limit, turning Pillow's errors into :class:`ImageRejected`.

    Pillow's global decompression-bomb limit is lifted for the call (and restored), because our configurable
    check on the header replaces it.
    """
    pillow_limit = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None  # our own, configurable check runs on the header, before decoding
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            with Image.open(io.BytesIO(data)) as image:
                return _pillow_pixels(image, data, max_pixels, conversions)
        except ImageRejected:
            raise
        except UnidentifiedImageError as error:
            raise ImageRejected("not a decodable image (the content does not match any image format)") from error
        except (OSError, SyntaxError, ValueError) as error:
            text = str(error)
            if "truncated" in text or "broken data stream" in text or "premature end" in text.lower():
                raise ImageRejected(f"truncated file ({text})") from error
            raise ImageRejected(f"unreadable image ({type(error).__name__}: {text})") from error
        finally:
            Image.MAX_IMAGE_PIXELS = pillow_limit


def _pillow_pixels(image: Image.Image, data: bytes, max_pixels: int, conversions: list[str]) -> np.ndarray:
    """Pixels of an opened image: size checked from the header first, EXIF orientation applied, changes listed.

    16-bit colour PNGs are decoded separately (:func:`_from_png16`) because Pillow would keep only 8 bits.
    """
    _check_pixel_budget(image.width, image.height, max_pixels)
    frames = getattr(image, "n_frames", 1)
    if frames > 1:
        conversions.append(_pages_note(frames))
    rawmodes = {str(tile.args) for tile in image.tile}
    png16 = next(iter(rawmodes)) if image.format == "PNG" and rawmodes <= set(_PNG16_RAWMODES) else None
    if png16:
        return _from_png16(data, png16, conversions)
    if any(";16" in mode for mode in rawmodes) and image.mode in ("RGB", "RGBA"):
        conversions.append("16-bit colour reduced to 8 bit by Pillow")
    image.load()
    orientation = image.getexif().get(0x0112, 1)
    if orientation not in (None, 1):
        image = ImageOps.exif_transpose(image)
        conversions.append(f"EXIF orientation {orientation} applied")
    return _to_array(image, conversions)


def read_image(path: str | Path, max_pixels: int | None = None) -> np.ndarray:
    """An image file's pixels as (y, x, c) uint8 or uint16, decoded as the ingest decodes frames.

    ``max_pixels`` ``None`` keeps Pillow's own decompression-bomb limit (the ingest passes the workspace's
    ``DEFECTFLOW_MAX_PIXELS``).

    Raises:
        ImageRejected: Naming the file and saying what is wrong with it.
    """
    path = Path(path)
    try:
        limit = max_pixels if max_pixels is not None else 2 * (Image.MAX_IMAGE_PIXELS or 0) or 2**62
        return decode_image(path.read_bytes(), path.suffix, limit).pixels
    except ImageRejected as rejection:
        raise ImageRejected(f"{path}: {rejection}") from rejection


def to_unit_float(array: np.ndarray) -> np.ndarray:
    """uint8 / 255, uint16 / 65535 (the full 16-bit range, not the image's own maximum, so that exposure
    differences are kept), or float clipped: float32 in ``[0, 1]``.

    Raises:
        ValueError: For other dtypes (they carry no known value range; :func:`decode_image` never gives them).
    """
    if array.dtype == np.uint8:
        return array.astype(np.float32) / 255.0
    if array.dtype == np.uint16:
        return array.astype(np.float32) / 65535.0
    if np.issubdtype(array.dtype, np.floating):
        return np.clip(array.astype(np.float32), 0.0, 1.0)
    raise ValueError(f"unsupported image dtype {array.dtype}; pass uint8, uint16 or float in [0, 1]")


def to_rgb(array: np.ndarray) -> np.ndarray:
    """``(H, W)``, ``(H, W, 1)``, ``(H, W, 3)`` or ``(H, W, 4)`` → ``(H, W, 3)`` (grey repeated, alpha dropped).

    Raises:
        ValueError: For other shapes.
    """
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3 or array.shape[2] not in (1, 3, 4):
        raise ValueError(
            f"expected an image of shape (H, W), (H, W, 1), (H, W, 3) or (H, W, 4), got {array.shape}. "
            "Pass frames as height x width (x channels) arrays."
        )
    if array.shape[2] == 1:
        return np.repeat(array, 3, axis=2)
    return array[:, :, :3]


def imagenet_normalise(images: torch.Tensor) -> torch.Tensor:
    """ImageNet normalisation of ``(3, H, W)`` or ``(N, 3, H, W)`` tensors in ``[0, 1]``."""
    mean = torch.tensor(IMAGENET_MEAN, dtype=images.dtype, device=images.device).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=images.dtype, device=images.device).view(3, 1, 1)
    return (images - mean) / std


def imagenet_denormalise(images: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`imagenet_normalise` (for overlays)."""
    mean = torch.tensor(IMAGENET_MEAN, dtype=images.dtype, device=images.device).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=images.dtype, device=images.device).view(3, 1, 1)
    return images * std + mean
