"""Scoring with ONNX Runtime: the exported graph behind the same interface as the torch detector.

:class:`OnnxDetector` offers what :class:`models.model_kinds.AnomalyDetector` promises (``input_size``,
``score``), so :func:`models.detector.inference.score_crops` runs it unchanged: preprocessing, calibration,
decisions and heatmap normalisation stay one implementation for both runtimes. ``onnxruntime`` is imported in this
module only, and only when a session is opened.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from models.detector.calibration import Calibration
from models.detector.onnx_export import INPUT_NAME, OPSET
from models.detector.onnx_package import ONNX_FILE, ExportRecord, onnx_problem, read_record
from models.packaging import DamagedWeights


def open_session(path: Path, threads: int | None = None) -> Any:
    """An ONNX Runtime CPU session on ``path`` with ``threads`` intra-op threads (``None``: ORT's default).

    One inter-op thread: the graph is a chain, and a worker's cores belong to its intra-op threads as torch's do.
    Idle threads do not spin, as torch's OpenMP threads do not (``OMP_WAIT_POLICY=PASSIVE``): on a busy machine
    spinning threads take the cores the working ones need.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def runtime_versions() -> dict[str, Any]:
    """torch, ONNX Runtime and opset versions, recorded with an export (an upgrade is a reason to export again)."""
    import onnxruntime as ort

    return {"torch": torch.__version__, "onnxruntime": ort.__version__, "opset": OPSET}


class OnnxDetector(nn.Module):
    """An exported detector run by ONNX Runtime on the CPU.

    An ``nn.Module`` without parameters, so scoring's ``eval()`` and ``to()`` calls are harmless; it always runs
    on the CPU.

    Args:
        session: From :func:`open_session`.
        image_size: The graph's fixed input side.
    """

    def __init__(self, session: Any, image_size: int) -> None:
        super().__init__()
        self.session = session
        self.image_size = image_size

    @property
    def input_size(self) -> int:
        """Side of the square input, in pixels."""
        return self.image_size

    def score(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Anomaly maps ``(N, 1, S, S)`` and raw image scores ``(N,)``, as the torch detector returns them."""
        batch = np.ascontiguousarray(images.detach().cpu().numpy(), dtype=np.float32)
        maps, scores = self.session.run(None, {INPUT_NAME: batch})
        return torch.from_numpy(maps), torch.from_numpy(scores)


def load_onnx_detector(
    directory: str | Path, threads: int | None = None
) -> tuple[OnnxDetector, Calibration, ExportRecord]:
    """Open the ONNX export of a package after checking the graph against its recorded digest.

    Returns:
        ``(detector, calibration, record)``.

    Raises:
        FileNotFoundError: The package has no ONNX export.
        DamagedWeights: ``detector.onnx`` differs from the digest recorded when it was exported.
    """
    directory = Path(directory)
    record = read_record(directory)
    if record is None:
        raise FileNotFoundError(
            f"{directory} has no ONNX export; run 'defectflow export --model URI --format onnx' to add one"
        )
    problem = onnx_problem(directory, record)
    if problem:
        raise DamagedWeights(f"{directory}: {problem}; export the model again, or score with torch")
    session = open_session(directory / ONNX_FILE, threads)
    return OnnxDetector(session, record.image_size), Calibration.from_dict(record.calibration), record
