"""Exporting the detector's whole scoring path to one ONNX graph.

The graph is what :meth:`models.detector.network.ReverseDistillation.score` computes: teacher, bottleneck,
student, per-level cosine distances, upsampling, fusion, Gaussian smoothing and the image score (the map's
maximum). Its input is the preprocessed batch (:func:`models.detector.inference.preprocess_crops`: resize to the
package's size, ImageNet normalisation), so preprocessing and the post-processing that follows (calibration,
heatmap resize) stay one implementation shared by both runtimes. The batch axis is dynamic; the image size is
fixed to the package's (the positional embedding and the smoothing padding are sized for it).

torch's ``torch.export``-based exporter is used (the TorchScript one cannot export the grouped smoothing
convolution). It imports ``onnxscript``; that import happens here only, when an export is asked for.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from models.detector.network import ReverseDistillation

INPUT_NAME = "images"
OUTPUT_NAMES = ("maps", "scores")
#: ONNX operator set of the export (supported by the ONNX Runtime versions this project installs).
OPSET = 18
#: Prefix of the ``metadata_props`` keys that make the graph self-describing for an ONNX-only reader.
METADATA_PREFIX = "defectflow."


class ScoringPath(nn.Module):
    """The detector's scoring path as a module whose ``forward`` is what gets exported.

    ``ReverseDistillation.forward`` returns training features; scoring needs ``score``.
    """

    def __init__(self, detector: ReverseDistillation) -> None:
        super().__init__()
        self.detector = detector

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Anomaly maps ``(N, 1, S, S)`` and raw image scores ``(N,)``."""
        return self.detector.score(images)


def export_onnx(detector: ReverseDistillation, path: Path, metadata: dict[str, Any] | None = None) -> Path:
    """Write ``detector``'s scoring path to ``path`` as one self-contained ONNX file.

    Args:
        detector: The detector (exported in eval mode on the CPU; its own mode and device are left unchanged).
        path: Target ``.onnx`` file.
        metadata: JSON-ready entries stored as ``metadata_props`` ``defectflow.<key>`` (calibration,
            preprocessing), so the graph alone says how to feed it and how to read its outputs.

    Returns:
        ``path``.
    """
    size = detector.config.image_size
    module = ScoringPath(detector).eval().cpu()
    example = torch.zeros(2, 3, size, size)
    batch = torch.export.Dim("batch", min=1, max=4096)
    program = torch.onnx.export(
        module,
        (example,),
        None,
        input_names=[INPUT_NAME],
        output_names=list(OUTPUT_NAMES),
        dynamic_shapes={"images": {0: batch}},
        opset_version=OPSET,
        dynamo=True,
        optimize=True,
        verbose=False,
    )
    if program is None:  # pragma: no cover - torch returns the program when no file is given
        raise RuntimeError("torch.onnx.export returned no program; upgrade torch (>= 2.5) and onnxscript")
    path.parent.mkdir(parents=True, exist_ok=True)
    program.save(str(path), external_data=False)
    if metadata:
        _embed_metadata(path, metadata)
    return path


def _embed_metadata(path: Path, metadata: dict[str, Any]) -> None:
    import onnx

    graph = onnx.load(str(path))
    for key, value in sorted(metadata.items()):
        entry = graph.metadata_props.add()
        entry.key = f"{METADATA_PREFIX}{key}"
        entry.value = json.dumps(value, sort_keys=True)
    onnx.save(graph, str(path))


def read_metadata(path: Path) -> dict[str, Any]:
    """The ``defectflow.*`` entries of an exported graph (for ONNX-only readers and tests)."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False)
    return {
        entry.key[len(METADATA_PREFIX) :]: json.loads(entry.value)
        for entry in graph.metadata_props
        if entry.key.startswith(METADATA_PREFIX)
    }
