"""Finding and reading the frame files a camera line writes.

Reading is defensive: a file that vanished or changed since it was hashed is refused (quarantined) with a reason
instead of crashing the shift. Decoding the bytes is :func:`models.imaging.decode_image`, the same for ingest and
training.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from models.errors import DefectflowError


class FrameRejected(Exception):
    """A listed file that cannot be read as it was hashed; ``str(error)`` is the reason written to the manifest."""


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


def read_source(path: Path, expected_sha256: str | None) -> bytes:
    """The file's bytes, read once, so that what is decoded is what was hashed.

    Raises:
        FrameRejected: When the file vanished, or its bytes changed since they were hashed.
    """
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


class SourceError(DefectflowError, ValueError):
    """The folder to ingest is missing, not a folder, or holds no files."""


def resolve_source_dir(source: str | Path) -> Path:
    """Absolute path of the folder a shift is ingested from, or a :class:`SourceError` saying what to fix."""
    path = Path(source).expanduser()
    if not path.exists():
        raise SourceError(f"source folder {path} does not exist; pass the folder the camera line wrote the frames to")
    if not path.is_dir():
        raise SourceError(f"source {path} is not a folder; pass the folder that holds the shift's frames")
    return path.resolve()
