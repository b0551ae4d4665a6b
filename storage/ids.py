"""Names that travel through the pipeline: shift ids and image ids.

Both end up as zarr node names and folder names, so they are restricted to characters every store accepts.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import PurePosixPath

from models.errors import DefectflowError

SHIFT_ID_PATTERN = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_SAFE_CHARS = re.compile(r"[^A-Za-z0-9._-]")
_MAX_CLEAN_LENGTH = 200
_FOLDED_MARK = "---"  # never inside a clean id: see image_id_for


class InvalidShiftId(DefectflowError, ValueError):
    """A shift id outside ``[A-Za-z0-9._-]{1,64}``."""


def validate_shift_id(shift_id: str) -> str:
    """Return ``shift_id`` unchanged, or raise with a message that says what a valid id looks like."""
    if not isinstance(shift_id, str) or not SHIFT_ID_PATTERN.match(shift_id) or shift_id in (".", ".."):
        raise InvalidShiftId(
            f"shift id {shift_id!r} is not valid: use 1 to 64 letters, digits, '.', '_' or '-' "
            "(for example 2026-11-25_night)."
        )
    return shift_id


def _is_clean(part: str) -> bool:
    """Whether a path part can stand in an id as it is, so that splitting the id at ``--`` gives the parts back."""
    return (
        not _SAFE_CHARS.search(part)
        and "--" not in part
        and not part.startswith("-")
        and not part.endswith("-")
        and not part.startswith(("__", "."))
    )


def image_id_for(relative_path: str) -> str:
    """Stable, readable image id of a frame's path relative to the shift's source folder; injective over paths.

    A path whose every part is clean (only ``[A-Za-z0-9._-]``, no ``--`` inside, no leading or trailing ``-``, no
    leading ``__`` or ``.``) becomes its parts joined by ``--``, which splits back into the path. Any other path
    is folded into such a name (characters replaced by ``_``, a leading ``__``/``.`` prefixed by ``f``, cut at
    190 characters) and gets ``---`` and 12 hex digits of the path's SHA-256: a clean id never contains ``---``,
    so a folded id cannot equal a clean one, and two folded ids differ unless their digests collide (the ingest
    refuses that case with a reason rather than share an array).

    Examples:
        ``cam1/frame_0001.png`` -> ``cam1--frame_0001.png``;
        ``cam 1/frame.png`` -> ``cam_1--frame.png---<12 hex>``.
    """
    parts = PurePosixPath(relative_path).parts
    if not parts:
        raise ValueError("empty relative path has no image id")
    image_id = "--".join(parts)
    if all(_is_clean(part) for part in parts) and len(image_id) <= _MAX_CLEAN_LENGTH:
        return image_id
    folded = "--".join(_SAFE_CHARS.sub("_", part) for part in parts)
    if folded.startswith(("__", ".")):
        folded = "f" + folded
    digest = hashlib.sha256(relative_path.encode("utf-8")).hexdigest()[:12]
    return f"{folded[:190]}{_FOLDED_MARK}{digest}"
