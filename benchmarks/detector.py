"""Throughput of the reverse-distillation detector: images/s of the bare forward (anomaly map + image score).

Next to it the teacher forward alone, the lower bound of any distillation detector on that backbone. CPU always;
CUDA when available, with bfloat16 autocast; BatchNorms folded and the channels-last memory format on both (as the
scoring pipeline runs it, ``models.model_kinds.for_inference``).
Weights are random: throughput does not depend on them.

Quick smoke run (seconds)::

    .venv/bin/python benchmarks/detector.py --image-size 128 --batch-sizes 1 4 --iterations 3

Full figures for the docs (small and paper configurations, batch 1 and 16)::

    .venv/bin/python benchmarks/detector.py --config small --image-size 128 --batch-sizes 1 16 --iterations 20
    .venv/bin/python benchmarks/detector.py --config paper --image-size 256 --batch-sizes 1 16 --iterations 20
    .venv/bin/python benchmarks/detector.py --config recipe --backbone mobilenetv2_100 --batch-sizes 1 16

Against the peer, anomalib's ``ReverseDistillationModel`` (``benchmarks/detector_peer.py``: ours with torch and
with ONNX Runtime, the peer and the teacher alone in interleaved rounds; the resnet18 small configuration and the
mobilenetv2_100 recipe; anomalib installed outside the venv, e.g. ``pip install --no-deps --target /tmp/peer``)::

    PYTHONPATH=/tmp/peer .venv/bin/python benchmarks/detector.py --peer --image-size 256 --batch-sizes 16 \
        --threads 1 2 --iterations 7
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models.detector.builder import build_detector
from models.detector.config import DetectorConfig
from models.detector.recipes import RECOMMENDED_BACKBONE
from models.model_kinds import INFERENCE_MEMORY_FORMAT, for_inference


def median_seconds(run: Callable[[], object], device: torch.device, warmup: int, iterations: int) -> float:
    """Median seconds of ``run`` over ``iterations`` after ``warmup`` calls."""
    for _ in range(warmup):
        run()
    times = []
    for _ in range(iterations):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        run()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def benchmark(config: DetectorConfig, device: torch.device, batch_size: int, warmup: int, iterations: int) -> dict:
    """Images/s of the full detector forward and of the teacher alone on ``device``."""
    model = for_inference(build_detector(config, load_pretrained=False), device)
    images = torch.randn(batch_size, 3, config.image_size, config.image_size, device=device)
    images = images.contiguous(memory_format=INFERENCE_MEMORY_FORMAT)
    cuda = device.type == "cuda"

    def forward(part: Callable[[torch.Tensor], object]) -> Callable[[], object]:
        def run() -> object:
            with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
                return part(images)

        return run

    detector_s = median_seconds(forward(model.score), device, warmup, iterations)
    teacher_s = median_seconds(forward(model.teacher), device, warmup, iterations)
    return {
        "device": device.type
        + (" bf16, folded, channels-last" if cuda else f" fp32 {torch.get_num_threads()} threads, folded, c-last"),
        "batch": batch_size,
        "detector_ips": batch_size / detector_s,
        "detector_ms": 1000 * detector_s,
        "teacher_ips": batch_size / teacher_s,
        "teacher_ms": 1000 * teacher_s,
    }


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, run every device and batch size, print a table."""
    args = _parser().parse_args(argv)
    if args.peer:
        return _peer(args)
    config = _config(args)
    print(
        f"detector benchmark: {config.backbone}, {config.image_size} px, config={args.config}, "
        f"median of {args.iterations} after {args.warmup} warm-up calls"
    )
    _print_rows(config, args)
    return 0


def _parser() -> argparse.ArgumentParser:
    """The command line of the benchmark."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--config",
        choices=("small", "paper", "recipe"),
        default="small",
        help="small: ResNet18; paper: WRN50 sizes; recipe: the --backbone family's recipe (models/detector/recipes.py)",
    )
    parser.add_argument("--backbone", default=None, help="override the configuration's backbone")
    parser.add_argument("--image-size", type=int, default=None, help="input side (default: the config's)")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--devices", nargs="+", default=None, help="default: cpu, plus cuda when available")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--iterations", type=int, default=10)
    parser.add_argument(
        "--threads", type=int, nargs="+", default=None, help="torch CPU thread counts (default: torch's choice)"
    )
    parser.add_argument(
        "--peer",
        action="store_true",
        help="compare with anomalib's ReverseDistillationModel (small and recipe configurations, CPU; "
        "--config, --backbone and --devices are ignored; --iterations is the number of interleaved rounds)",
    )
    return parser


def _config(args: argparse.Namespace) -> DetectorConfig:
    """The detector configuration to time: small, the paper's, or a backbone family's recipe, with overrides."""
    overrides = {}
    if args.backbone:
        overrides["backbone"] = args.backbone
    if args.image_size:
        overrides["image_size"] = args.image_size
    if args.config == "recipe":
        backbone = overrides.pop("backbone", RECOMMENDED_BACKBONE)
        return DetectorConfig.for_backbone(backbone, **overrides)
    return DetectorConfig.small(**overrides) if args.config == "small" else DetectorConfig(**overrides)


def _print_rows(config: DetectorConfig, args: argparse.Namespace) -> None:
    """Time every device, thread count and batch size, one table row each."""
    devices = args.devices or (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
    header = (
        f"{'device':<28} {'batch':>5} {'detector img/s':>15} {'ms/batch':>10} {'teacher img/s':>14} {'ms/batch':>10}"
    )
    print(header)
    print("-" * len(header))
    for name in devices:
        device = torch.device(name)
        if device.type == "cuda" and not torch.cuda.is_available():
            print(f"{name:<28} skipped: CUDA is not available")
            continue
        for threads in args.threads or [None]:
            if threads:
                torch.set_num_threads(threads)
            for batch_size in args.batch_sizes:
                row = benchmark(config, device, batch_size, args.warmup, args.iterations)
                print(
                    f"{row['device']:<28} {row['batch']:>5} {row['detector_ips']:>15.1f} "
                    f"{row['detector_ms']:>10.1f} {row['teacher_ips']:>14.1f} {row['teacher_ms']:>10.1f}"
                )


def _peer(args: argparse.Namespace) -> int:
    """Run the comparison with the peer (imported here: it imports benchmarks.export, which imports this module)."""
    from benchmarks.detector_peer import PeerOptions, run_peer_comparison

    options = PeerOptions(
        image_size=args.image_size or 256,
        batch_sizes=args.batch_sizes,
        threads=args.threads or [1, 2],
        rounds=args.iterations,
        warmup=args.warmup,
        configs=["small", "recipe"],
    )
    return run_peer_comparison(options)


if __name__ == "__main__":
    raise SystemExit(main())
