"""Models stay loaded in each worker process: loaded once per process and version, not per task or per image."""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from models.model_kinds import load_model
from storage.settings import worker_torch_threads

logger = logging.getLogger(__name__)

_lock = threading.Lock()
_cache: dict[tuple[str, str], Any] = {}


@dataclass(frozen=True)
class ModelRef:
    """A pinned model the flow resolved once: where its files are and which registry version it is."""

    kind: str
    local_dir: str
    uri: str
    version: str | None = None


def compute_device() -> torch.device:
    """CUDA when the worker has a GPU, else the CPU with as many torch threads as the worker is given."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    threads = worker_torch_threads()
    if threads and threads != torch.get_num_threads():
        torch.set_num_threads(threads)
    return torch.device("cpu")


def _load(ref: ModelRef, device: torch.device) -> Any:
    model, extra, package = load_model(ref.kind, ref.local_dir)
    model = model.to(device).eval()
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    logger.info("loaded %s from %s on %s (pid %d)", ref.kind, ref.local_dir, device, os.getpid())
    return model, extra, package


def get_model(ref: ModelRef) -> tuple[Any, Any, Any]:
    """``(model, extra, package)`` for ``ref``, loaded on first use in this process and kept.

    ``extra`` is the detector's calibration (``None`` for the segmenter).
    """
    key = (ref.kind, str(Path(ref.local_dir)))
    with _lock:
        if key not in _cache:
            _cache[key] = _load(ref, compute_device())
        return _cache[key]


def loaded_count() -> int:
    """How many models this process holds (for tests that check models load once per worker)."""
    return len(_cache)
