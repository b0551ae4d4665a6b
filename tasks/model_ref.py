"""The reference to a pinned model that a flow hands to its tasks.

Its own module, importing nothing heavy, so that the flow process can build and pass it without importing torch:
only the task bodies on the workers load models (:mod:`tasks.model_cache`).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ModelRef:
    """A pinned model the flow resolved once: where its files are and which registry version it is."""

    kind: str
    local_dir: str
    uri: str
    version: str | None = None
