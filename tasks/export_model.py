"""Export a detector package to ONNX, check the export against torch, and add it to the package.

Everything is done in a scratch folder first: export, the agreement check (:mod:`models.detector.export_agreement`)
and the speed measurement (:mod:`models.detector.runtime_speed`). Only an export that passes is added: to the
registered version (its run's ``model/`` folder, with its own digest tags, :func:`storage.registry.add_version_files`)
and to the local copy of the package, or to the package directory when the model was given as one.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

from models.detector.calibration import Calibration
from models.detector.export_agreement import CROP_SOURCE, agreement_crops, compare_runtimes
from models.detector.inference import preprocess_crops
from models.detector.network import ReverseDistillation
from models.detector.onnx_export import export_onnx
from models.detector.onnx_package import ONNX_FILE, RECORD_FILE, ExportRecord, preprocessing, read_record
from models.detector.onnx_runtime import OnnxDetector, open_session, runtime_versions
from models.detector.package import load_detector
from models.detector.runtime_speed import measure_speed
from models.errors import DefectflowError
from models.packaging import file_sha256
from storage.registry import ResolvedModel, add_version_files, resolve_model
from storage.settings import Settings, worker_torch_threads

#: Images per timed call of the speed measurement: the scoring task's default crops per forward pass.
SPEED_BATCH = 16
#: A Dask worker's torch threads without ``DEFECTFLOW_TORCH_THREADS``: Dask starts workers with OMP_NUM_THREADS=1.
DASK_WORKER_THREADS = 1


class ExportRefused(DefectflowError, ValueError):
    """The export does not score like torch (or cannot be checked); nothing was added to the package."""


@dataclass
class ExportResult:
    """What ``export`` did.

    Attributes:
        model: The package, as ``detector v3`` or its path.
        record: The export's record (figures, runtime chosen).
        added: ``False`` when the package already had an export and it was kept.
    """

    model: str
    record: ExportRecord
    added: bool


def check_and_measure(
    model: ReverseDistillation, calibration: Calibration, onnx_path: Path, runtime: str
) -> ExportRecord:
    """Run the export check on ``onnx_path``, then measure both runtimes; the record of an export that passes.

    Args:
        model: The torch detector the graph was exported from.
        calibration: Its calibration (thresholds of the decisions compared).
        onnx_path: The exported graph.
        runtime: ``auto`` (the faster one measured here), ``onnx`` or ``torch``.

    Raises:
        ExportRefused: When maps or decisions differ beyond the rule; the message gives both figures.
    """
    size = model.config.image_size
    onnx = OnnxDetector(open_session(onnx_path, torch.get_num_threads()), size)
    agreement = compare_runtimes(model, onnx, calibration, agreement_crops(size), CROP_SOURCE)
    problem = agreement.problem()
    if problem:
        raise ExportRefused(
            f"the ONNX export does not score like torch on {agreement.crops} check crops: {problem} (largest map "
            f"difference {agreement.max_map_difference:.3g}, {agreement.differing_decisions} differing decisions); "
            "nothing was added to the package. Check the torch and onnxruntime versions, or keep scoring with torch"
        )
    speed = measure_speed(model, onnx, preprocess_crops(agreement_crops(size, SPEED_BATCH, seed=1), size))
    reason = f"set with --runtime {runtime}"
    if runtime == "auto":
        runtime = speed.faster
        reason = (
            f"measured at export: ONNX Runtime {speed.onnx_images_per_s:.1f} img/s, torch "
            f"{speed.torch_images_per_s:.1f} img/s ({speed.threads} threads, batch {speed.batch})"
        )
    return ExportRecord(
        onnx_sha256=file_sha256(onnx_path),
        image_size=size,
        calibration=calibration.to_dict(),
        preprocessing=preprocessing(size),
        agreement=agreement.to_dict(),
        speed=speed.to_dict(),
        runtime=runtime,
        runtime_reason=reason,
        versions=runtime_versions(),
    )


def build_export(package_dir: Path, out_dir: Path, runtime: str) -> ExportRecord:
    """Export the package in ``package_dir`` into ``out_dir`` (graph and record) and check it.

    Raises:
        ExportRefused: A package without calibration, or an export that fails the check.
    """
    model, calibration, _ = load_detector(package_dir)
    if calibration is None:
        raise ExportRefused(
            f"{package_dir} has no calibration, so the export's decisions cannot be checked; retrain the detector "
            "with 'defectflow train detector'"
        )
    torch.set_num_threads(worker_torch_threads() or DASK_WORKER_THREADS)  # measure as a worker will run
    size = model.config.image_size
    metadata = {"calibration": calibration.to_dict(), "preprocessing": preprocessing(size)}
    onnx_path = export_onnx(model, out_dir / ONNX_FILE, metadata)
    record = check_and_measure(model, calibration, onnx_path, runtime)
    record.write(out_dir)
    return record


def _install(files: list[Path], directory: Path) -> None:
    """Copy ``files`` into a package directory, each replaced whole (a reader never sees half a file)."""
    for path in files:
        partial = directory / f".{path.name}.partial"
        shutil.copyfile(path, partial)
        os.replace(partial, directory / path.name)


def export_model(settings: Settings, uri: str, runtime: str = "auto", replace: bool = False) -> ExportResult:
    """Export the detector ``uri`` names to ONNX and add the export to its package when it passes the check.

    Args:
        settings: Workspace settings.
        uri: ``models:/detector@champion``, ``models:/detector/3`` or a package directory.
        runtime: ``auto``, ``onnx`` or ``torch``: what CPU workers run (``auto``: the faster one measured here).
        replace: Export again when the package already has an export.

    Raises:
        ExportRefused: The export failed the check; the registry and the package are unchanged.
    """
    resolved: ResolvedModel = resolve_model(settings, uri, "detector")
    existing = read_record(resolved.local_dir)
    if existing is not None and not replace:
        return ExportResult(resolved.label, existing, added=False)
    with tempfile.TemporaryDirectory(prefix="defectflow-export-") as scratch:
        out_dir = Path(scratch)
        record = build_export(resolved.local_dir, out_dir, runtime)
        files = [out_dir / ONNX_FILE, out_dir / RECORD_FILE]
        if resolved.name and resolved.version:
            add_version_files(settings, resolved.name, resolved.version, files, {"onnx_runtime": record.runtime})
        _install(files, resolved.local_dir)
    return ExportResult(resolved.label, record, added=True)
