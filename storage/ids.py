"""Names that travel through the pipeline: shift ids and image ids.

Both end up as zarr node names and folder names, so they are restricted to characters every store accepts.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import PurePosixPath

SHIFT_ID_PATTERN = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_SAFE_CHARS = re.compile(r"[^A-Za-z0-9._-]")


class InvalidShiftId(ValueError):
    """A shift id outside ``[A-Za-z0-9._-]{1,64}``."""


def validate_shift_id(shift_id: str) -> str:
    """Return ``shift_id`` unchanged, or raise with a message that says what a valid id looks like."""
    if not isinstance(shift_id, str) or not SHIFT_ID_PATTERN.match(shift_id) or shift_id in (".", ".."):
        raise InvalidShiftId(
            f"shift id {shift_id!r} is not valid: use 1 to 64 letters, digits, '.', '_' or '-' "
            "(for example 2026-11-25_night)."
        )
    return shift_id


def image_id_for(relative_path: str) -> str:
    """Stable, unique image id derived from a frame's path relative to the shift's source folder.

    Folders become ``--``; a path that needed any character replaced (spaces, non-ASCII, a ``--`` of its own)
    gets an 8-hex digest of the original path so that two paths never share an id. The same path always gives
    the same id, on every machine.

    Examples:
        ``cam1/frame_0001.png`` -> ``cam1--frame_0001.png``;
        ``cam 1/frame.png`` -> ``cam_1--frame.png-1f0c9a2b`` (digest shown is illustrative).
    """
    parts = PurePosixPath(relative_path).parts
    if not parts:
        raise ValueError("empty relative path has no image id")
    cleaned = [_SAFE_CHARS.sub("_", part) for part in parts]
    lossy = any(c != p for c, p in zip(cleaned, parts, strict=True)) or any("--" in p for p in parts)
    image_id = "--".join(cleaned)
    if image_id.startswith("__") or image_id.startswith("."):
        image_id = "f" + image_id
        lossy = True
    if lossy or len(image_id) > 200:
        digest = hashlib.sha256(relative_path.encode("utf-8")).hexdigest()[:8]
        image_id = f"{image_id[:190]}-{digest}"
    return image_id
