"""torch against ONNX Runtime for the same detector: images/s of the scoring path, next to the teacher-alone bound.

For each configuration the detector (random weights: speed does not depend on them) is exported once with
:func:`models.detector.onnx_export.export_onnx`, as ``defectflow export`` does; then, per thread count, both
runtimes score the same batch with :func:`models.detector.runtime_speed.measure_speed` (the measurement
``defectflow export`` records: alternating rounds, median) and the teacher forward alone is timed as in
``benchmarks/detector.py``. The largest map difference between the runtimes on the export check's crops is printed
too, against the tolerance of the check. CPU only.

Figures for docs/scoring.md (a few minutes on 2 cores)::

    .venv/bin/python benchmarks/export.py --image-size 256 --batch 16 --threads 1 2
"""

from __future__ import annotations

import argparse
import copy
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.detector import median_seconds
from models.detector.builder import build_detector
from models.detector.calibration import calibrate
from models.detector.config import DetectorConfig
from models.detector.export_agreement import MAP_TOLERANCE, agreement_crops, compare_runtimes
from models.detector.inference import score_crops
from models.detector.network import ReverseDistillation
from models.detector.onnx_export import export_onnx
from models.detector.onnx_runtime import OnnxDetector, open_session
from models.detector.recipes import RECOMMENDED_BACKBONE
from models.detector.runtime_speed import measure_speed
from models.model_kinds import INFERENCE_MEMORY_FORMAT, for_inference

CONFIGS = {
    "small": lambda size: DetectorConfig.small(image_size=size),
    "recipe": lambda size: DetectorConfig.for_backbone(RECOMMENDED_BACKBONE, image_size=size),
}


def _map_difference(model: ReverseDistillation, onnx: OnnxDetector) -> float:
    """Largest raw-map difference on the export check's crops (calibrated on their own scores)."""
    crops = agreement_crops(model.config.image_size)
    scored = score_crops(model, crops)
    calibration = calibrate(scored.raw_scores, scored.raw_maps)
    return compare_runtimes(model, onnx, calibration, crops).max_map_difference


def _rows(name: str, config: DetectorConfig, threads: list[int], batch: int, rounds: int) -> list[str]:
    model = build_detector(config, load_pretrained=False).eval()
    images = torch.randn(batch, 3, config.image_size, config.image_size)
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        path = export_onnx(model, Path(scratch) / "detector.onnx")
        # The bound as the workers would run it: channels-last, like measure_speed's torch side.
        bound = for_inference(copy.deepcopy(model)).teacher
        bound_images = images.contiguous(memory_format=INFERENCE_MEMORY_FORMAT)
        for count in threads:
            torch.set_num_threads(count)
            onnx = OnnxDetector(open_session(path, count), config.image_size)
            speed = measure_speed(model, onnx, images, rounds)

            def teacher() -> object:
                with torch.inference_mode():
                    return bound(bound_images)

            teacher_ips = batch / median_seconds(teacher, torch.device("cpu"), 1, rounds)
            difference = _map_difference(model, onnx) if count == threads[0] else float("nan")
            rows.append(
                f"{name + ' ' + config.backbone:<24} {count:>7} {speed.torch_images_per_s:>11.1f} "
                f"{speed.onnx_images_per_s:>9.1f} {speed.onnx_images_per_s / speed.torch_images_per_s:>9.2f} "
                f"{teacher_ips:>13.1f} {speed.onnx_images_per_s / teacher_ips:>11.0%} {difference:>13.2g}"
            )
    return rows


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, export and measure each configuration, print a table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configs", nargs="+", choices=sorted(CONFIGS), default=["small", "recipe"])
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--rounds", type=int, default=3, help="timed calls per runtime (median)")
    args = parser.parse_args(argv)
    print(
        f"export benchmark: {args.image_size} px, batch {args.batch}, CPU fp32, median of {args.rounds} alternating "
        f"rounds; map tolerance of the export check {MAP_TOLERANCE:g}"
    )
    header = (
        f"{'configuration':<24} {'threads':>7} {'torch img/s':>11} {'ORT img/s':>9} {'ORT/torch':>9} "
        f"{'teacher img/s':>13} {'ORT/teacher':>11} {'max map diff':>13}"
    )
    print(header)
    print("-" * len(header))
    for name in args.configs:
        for row in _rows(name, CONFIGS[name](args.image_size), args.threads, args.batch, args.rounds):
            print(row, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
