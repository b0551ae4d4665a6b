"""Models stay loaded in each worker process: loaded once per process and version, not per task or per image.

Imports torch: only task bodies (on the workers) import this module, never a flow or task module at import.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import Any

import torch

from models.detector.onnx_package import read_record, runtime_for
from models.model_kinds import for_inference, load_model
from storage.settings import detector_runtime, worker_torch_threads
from tasks.model_ref import ModelRef

__all__ = ["ModelRef", "compute_device", "detector_runtime_for", "get_detector", "get_model", "loaded_count"]

logger = logging.getLogger(__name__)

_lock = threading.Lock()
_cache: dict[tuple[str, str], Any] = {}


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
    model = for_inference(model, device)
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


def _load_onnx(ref: ModelRef) -> Any:
    from models.detector.onnx_runtime import load_onnx_detector

    detector, calibration, record = load_onnx_detector(ref.local_dir, torch.get_num_threads())
    logger.info("loaded the ONNX export of %s from %s (pid %d)", ref.kind, ref.local_dir, os.getpid())
    return detector, calibration, record


def detector_runtime_for(ref: ModelRef) -> str:
    """``"onnx"`` or ``"torch"``: what this worker scores ``ref`` with (:func:`models.detector.onnx_package.runtime_for`
    on this worker's device and ``DEFECTFLOW_DETECTOR_RUNTIME``)."""
    return runtime_for(read_record(ref.local_dir), compute_device().type, detector_runtime())


def get_detector(ref: ModelRef) -> tuple[Any, Any, Any]:
    """``(detector, calibration, package or export record)`` for scoring ``ref`` on this worker, kept per process.

    A CPU worker gets the package's ONNX export run by ONNX Runtime when :func:`detector_runtime_for` says so
    (both score through :func:`models.detector.inference.score_crops`); otherwise :func:`get_model`'s torch model.
    """
    if detector_runtime_for(ref) != "onnx":
        return get_model(ref)
    key = ("detector-onnx", str(Path(ref.local_dir)))
    with _lock:
        if key not in _cache:
            compute_device()  # sets this worker's thread count, which the session takes
            _cache[key] = _load_onnx(ref)
        return _cache[key]


def loaded_count() -> int:
    """How many models this process holds (for tests that check models load once per worker)."""
    return len(_cache)
