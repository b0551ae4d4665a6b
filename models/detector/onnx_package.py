"""The ONNX export inside a detector package: ``detector.onnx`` and the record beside it.

The record (``detector_onnx.json``) is what a reader of the export needs without torch: the SHA-256 of the graph
(checked before a session is opened, as ``weights.pt`` is checked against ``weights_sha256``), the input size and
preprocessing, the calibration (a copy of ``defectflow_model.json``'s, so an ONNX-only reader finds thresholds and
normalisation beside the graph), the agreement figures of the export check, the speeds measured at export and the
runtime chosen from them. ``defectflow_model.json`` and ``weights.pt`` are left byte for byte as they were, so
everything recorded about them stays valid.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from models.imaging import IMAGENET_MEAN, IMAGENET_STD
from models.packaging import file_sha256

ONNX_FILE = "detector.onnx"
RECORD_FILE = "detector_onnx.json"
#: What a package's record may choose.
RUNTIMES = ("torch", "onnx")


def preprocessing(image_size: int) -> dict[str, Any]:
    """How a crop becomes the graph's input (the rule itself is :func:`models.detector.inference.preprocess_crop`)."""
    return {
        "input": "images: float32 (N, 3, S, S), RGB, NCHW",
        "image_size": image_size,
        "steps": [
            "scale pixels to [0, 1] (uint8 / 255, uint16 / 65535); grey to RGB by repetition; alpha dropped",
            f"bilinear resize to {image_size}x{image_size} (models.detector.data.resize_tensor), clip to [0, 1]",
            "subtract the ImageNet mean and divide by its standard deviation, per channel",
        ],
        "mean": list(IMAGENET_MEAN),
        "std": list(IMAGENET_STD),
        "outputs": {
            "maps": "raw anomaly maps (N, 1, S, S); normalise with calibration.normalise_pixels",
            "scores": "raw image scores (N,); anomalous when >= calibration.image_threshold",
        },
    }


@dataclass
class ExportRecord:
    """What ``detector_onnx.json`` holds.

    Attributes:
        onnx_sha256: SHA-256 of ``detector.onnx`` as written.
        image_size: Fixed input side of the graph.
        calibration: The package's calibration (``Calibration.to_dict()``).
        preprocessing: :func:`preprocessing` of the image size.
        agreement: Figures of the export check (``Agreement.to_dict()``).
        speed: Images/s of both runtimes measured at export (``RuntimeSpeed.to_dict()``).
        runtime: ``"onnx"`` or ``"torch"``: what CPU workers run unless the runtime setting says otherwise.
        runtime_reason: Why (measured, or set when exporting).
        versions: torch, onnxruntime and opset of the export.
    """

    onnx_sha256: str
    image_size: int
    calibration: dict[str, Any]
    preprocessing: dict[str, Any]
    agreement: dict[str, Any]
    speed: dict[str, Any]
    runtime: str
    runtime_reason: str
    versions: dict[str, Any] = field(default_factory=dict)

    def write(self, directory: Path) -> Path:
        """Write the record into a package directory; returns its path."""
        path = directory / RECORD_FILE
        path.write_text(json.dumps(asdict(self), indent=2, sort_keys=True))
        return path


def read_record(directory: str | Path) -> ExportRecord | None:
    """The export record of a package, or ``None`` when the package has no ONNX export."""
    path = Path(directory) / RECORD_FILE
    if not path.is_file():
        return None
    return ExportRecord(**json.loads(path.read_text()))


def onnx_problem(directory: str | Path, record: ExportRecord) -> str | None:
    """Why ``detector.onnx`` is not the graph recorded with the export, or ``None`` when it is."""
    path = Path(directory) / ONNX_FILE
    if not path.is_file():
        return f"{ONNX_FILE} is missing"
    actual = file_sha256(path)
    if actual == record.onnx_sha256:
        return None
    return (
        f"{ONNX_FILE} has sha256 {actual[:16]}..., not the {record.onnx_sha256[:16]}... recorded when it was "
        "exported (the file is damaged or was replaced)"
    )


def runtime_for(record: ExportRecord | None, device_type: str, setting: str = "auto") -> str:
    """Which runtime scores a package on a device: ONNX Runtime only on a CPU and only with an export; then
    ``setting`` when it names a runtime (``DEFECTFLOW_DETECTOR_RUNTIME``), else the choice recorded at export from
    the speeds measured there."""
    if record is None or device_type != "cpu":
        return "torch"
    return setting if setting in RUNTIMES else record.runtime
