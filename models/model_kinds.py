"""The kinds of model a package can hold and how each is loaded: one line per kind.

A package's ``kind`` (``defectflow.json``, :mod:`models.packaging`) names its entry here; the entry is the module
whose ``load_package(directory)`` rebuilds it. A second detector kind is a new package module plus one line
(as timm's ``register_model`` or anomalib's ``get_model``); the scoring, evaluation and promotion code only needs
what :class:`AnomalyDetector` promises.
"""

from __future__ import annotations

from importlib import import_module
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import torch

from models.batch_norm_folding import fold_batch_norms

#: kind -> module with ``load_package(directory) -> (model, extra, package)``.
KINDS: dict[str, str] = {
    "detector": "models.detector.package",
    "segmenter": "models.segmentation.package",
}


@runtime_checkable
class AnomalyDetector(Protocol):
    """What scoring and evaluation need from a detector of any kind."""

    @property
    def input_size(self) -> int:
        """Side of the square input the detector scores, in pixels."""
        ...

    def score(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Anomaly maps ``(N, 1, S, S)`` and raw image scores ``(N,)`` of normalised images ``(N, 3, S, S)``."""
        ...

    # torch.nn.Module's, which scoring uses to place and freeze the model
    def eval(self) -> Any: ...

    def parameters(self) -> Any: ...

    def to(self, *args: Any, **kwargs: Any) -> Any: ...


def load_model(kind: str, directory: str | Path) -> tuple[torch.nn.Module, Any, Any]:
    """Rebuild the ``kind`` model saved in ``directory``: ``(model, extra, package)``.

    ``extra`` is what the kind keeps beside its weights (the detector's calibration; ``None`` for the segmenter).

    Raises:
        ValueError: For a kind that is not registered; the message lists the known ones.
    """
    if kind not in KINDS:
        raise ValueError(
            f"unknown model kind {kind!r}; known kinds: {', '.join(sorted(KINDS))}. A new kind is a package "
            "module with load_package(directory) and one line in models/model_kinds.py"
        )
    return import_module(KINDS[kind]).load_package(directory)


#: The memory layout torch networks score in, on every device (:func:`for_inference`, and the batches they get).
INFERENCE_MEMORY_FORMAT = torch.channels_last


def for_inference(model: torch.nn.Module, device: torch.device | str = "cpu") -> torch.nn.Module:
    """``model`` as workers run it: in eval mode, BatchNorms folded into convolutions, on ``device``, channels-last.

    Use the returned model: it is a folded copy where anything folded (:func:`models.batch_norm_folding.
    fold_batch_norms`, which checks the copy against ``model``), else ``model`` itself, moved in place.
    Channels-last is the fast layout of oneDNN's CPU convolutions (the detector scores 1.2-1.8x faster in it on
    a CPU, docs/scoring.md "Speed against the peer") and of cuDNN's with bf16; the network and its outputs are
    the same. Benchmarks and the export's speed measurement use this too, so they time what the workers run.
    """
    model, _ = fold_batch_norms(model.eval())
    return model.to(device, memory_format=INFERENCE_MEMORY_FORMAT).eval()
