"""The reference to a pinned model that a flow hands to its tasks.

Its own module, importing nothing heavy, so that the flow process can build and pass it without importing torch:
only the task bodies on the workers load models (:mod:`tasks.model_cache`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from storage.settings import Settings


@dataclass(frozen=True)
class ModelRef:
    """A pinned model the flow resolved once: where its files are and which registry version it is."""

    kind: str
    local_dir: str
    uri: str
    version: str | None = None


def pin_model(settings: Settings, uri: str, kind: str) -> ModelRef:
    """Resolve ``uri`` once (an alias may move during a run) into a reference pinned to its registry version.

    Raises:
        storage.registry.ModelNotFound: The URI names no version or directory.
        storage.registry.DamagedModel: The version's files differ from their recorded digests.
    """
    from storage.registry import resolve_model

    resolved = resolve_model(settings, uri, kind)
    pinned = f"models:/{resolved.name}/{resolved.version}" if resolved.version else resolved.uri
    return ModelRef(kind=kind, local_dir=str(resolved.local_dir), uri=pinned, version=resolved.version)
