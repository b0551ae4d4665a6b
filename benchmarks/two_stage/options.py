"""Command-line options, constants and the isolated work folder of the two-stage vs one-stage benchmark."""

from __future__ import annotations

import argparse
import os
import shutil
from pathlib import Path
from typing import Any

from models.detector.recipes import RECOMMENDED_BACKBONE
from models.weight_sources import PRETRAINED, RANDOM_INIT, WeightsUnavailableError

REPO = Path(__file__).resolve().parents[2]
DEFAULT_WORK = REPO / "benchmarks" / "out" / "two-stage-vs-one-stage"
MARKER = ".two-stage-vs-one-stage"
SHIFT_TWO_STAGE = "tvo-two-stage"
SHIFT_ONE_STAGE = "tvo-one-stage"
SEG_BACKBONE = "resnet18"
EPOCHS = "1000"  # the --minutes budget ends training; the segmenter's schedule follows the budget too
CROSS_CHECK_PIXELS = 20_000_000  # up to here the exact pixel AUROC is also computed by models.metrics.anomaly

#: Sizes of a full run and of ``--quick``; any option given on the command line wins over both.
PRESETS: dict[str, dict[str, Any]] = {
    "full": {
        "frames": 24,
        "size": (1536, 2048),
        "minutes": 4.0,
        "image_size": 256,
        "seg_image_size": 256,
        "train_good": 120,
        "seg_images": 60,
        "test_good": 20,
        "test_defect": 4,
    },
    "quick": {
        "frames": 6,
        "size": (384, 512),
        "minutes": 0.3,
        "image_size": 128,
        "seg_image_size": 128,
        "train_good": 24,
        "seg_images": 12,
        "test_good": 4,
        "test_defect": 1,
    },
}


def say(message: str) -> None:
    """Progress lines on stdout, flushed so they interleave correctly with the flows' own output."""
    print(f"[two-stage-vs-one-stage] {message}", flush=True)


def parse_args(argv: list[str] | None = None, description: str | None = None) -> argparse.Namespace:
    """Command-line options; unset sizes are filled from the ``full`` or ``quick`` preset.

    Args:
        argv: Arguments (default: the command line).
        description: ``--help`` text (the entry module's docstring, which documents the benchmark).
    """
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=DEFAULT_WORK, help="work folder (data/ and home/ are replaced)")
    parser.add_argument("--backbone", default=RECOMMENDED_BACKBONE, help="teacher of both detectors (timm name)")
    parser.add_argument(
        "--teacher-weights",
        default=PRETRAINED,
        help="'pretrained' (DEFECTFLOW_TEACHER_WEIGHTS, DEFECTFLOW_WEIGHTS_DIR, timm), a file, 'timm' or 'none'",
    )
    parser.add_argument("--quick", action="store_true", help="smoke-run sizes (6 frames of 384x512, 0.3 min/model)")
    parser.add_argument("--frames", type=int, help="frames of the labelled test shift [24]")
    parser.add_argument("--size", type=int, nargs=2, metavar=("H", "W"), help="frame height and width [1536 2048]")
    parser.add_argument("--defect-rate", type=float, default=0.25, help="defective share of the test shift")
    parser.add_argument("--product", type=int, default=None, help="one product on the line (default: a part per frame)")
    parser.add_argument("--belt", type=int, default=None, help="one belt under the camera (default: a belt per frame)")
    parser.add_argument("--seed", type=int, default=7, help="test shift seed; training sets use seed+1, seed+2")
    parser.add_argument("--minutes", type=float, help="training budget of each detector (and default of the segmenter)")
    parser.add_argument("--seg-minutes", type=float, help="training budget of the segmenter [--minutes]")
    parser.add_argument("--image-size", type=int, help="square input side of both detectors [256]")
    parser.add_argument("--seg-image-size", type=int, help="segmenter input long side [256]")
    parser.add_argument("--train-good", type=int, help="good training images of each detector [120]")
    parser.add_argument("--seg-images", type=int, help="segmentation training frames [60]")
    parser.add_argument("--test-good", type=int, help="good crops of the crop detector's evaluation set [20]")
    parser.add_argument("--test-defect", type=int, help="defective crops per type in that set [4]")
    parser.add_argument("--batch-size", type=int, default=8, help="frames per Dask task when scoring")
    parser.add_argument("--workers", type=int, default=None, help="LocalCluster workers (default: cores / 2, >= 2)")
    parser.add_argument("--no-bare", action="store_true", help="skip timing the bare per-batch computation")
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    args = parser.parse_args(argv)
    preset = PRESETS["quick" if args.quick else "full"]
    for key, value in preset.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.size = tuple(args.size)
    args.teacher_weights, args.encoder_weights = resolve_benchmark_weights(args.backbone, args.teacher_weights)
    if args.seg_minutes is None:
        args.seg_minutes = args.minutes
    if args.frames < 2 or args.train_good < 3 or args.seg_images < 2:
        parser.error("need --frames >= 2, --train-good >= 3 and --seg-images >= 2")
    if args.image_size % 32:
        parser.error(f"--image-size must be a multiple of 32 (got {args.image_size})")
    return args


def resolve_benchmark_weights(backbone: str, teacher_request: str) -> tuple[str, str]:
    """The teacher's weights (exit with the ways out when none) and the segmenter's (from scratch when none)."""
    from storage.settings import load_settings
    from tasks.backbone_weights import ENCODER, TEACHER, resolve_backbone_weights

    settings = load_settings()
    try:
        teacher = resolve_backbone_weights(settings, TEACHER, backbone, teacher_request)
    except WeightsUnavailableError as error:
        raise SystemExit(str(error)) from error
    try:
        encoder = resolve_backbone_weights(settings, ENCODER, SEG_BACKBONE, PRETRAINED)
    except WeightsUnavailableError:
        say(f"no pretrained {SEG_BACKBONE} weights for the segmenter: it trains from scratch")
        encoder = RANDOM_INIT
    return teacher, encoder


def prepare_work(work: Path) -> tuple[Path, Path]:
    """Empty ``data/`` and ``home/`` of a work folder this benchmark owns; refuse a foreign non-empty folder.

    The marker file keeps a mistyped ``--work`` (say, a real workspace) from being wiped.
    """
    work = work.expanduser().resolve()
    if work.is_dir() and any(work.iterdir()) and not (work / MARKER).is_file():
        raise SystemExit(f"{work} is not empty and was not made by this benchmark; pass a new or empty --work")
    work.mkdir(parents=True, exist_ok=True)
    (work / MARKER).write_text("work folder of benchmarks/two_stage_vs_one_stage.py; data/ and home/ are replaced\n")
    for name in ("data", "home"):
        shutil.rmtree(work / name, ignore_errors=True)
    return work / "data", work / "home"


def isolate_environment(home: Path) -> list[str]:
    """Point every setting at the benchmark's own workspace and lower the promotion floors, in this process only.

    Returns:
        What was changed, to print: the run must not register models in, or promote over, a real registry.
    """
    notes = []
    for name in ("MLFLOW_TRACKING_URI", "DEFECTFLOW_DASK_ADDRESS", "DEFECTFLOW_EVAL_DATA", "DEFECTFLOW_SEG_EVAL_DATA"):
        if os.environ.pop(name, None):
            notes.append(f"{name} unset for this run (the benchmark keeps its registry and cluster local)")
    os.environ["DEFECTFLOW_HOME"] = str(home)
    os.environ["DEFECTFLOW_FLOOR_IMAGE_AUROC"] = "0"
    os.environ["DEFECTFLOW_FLOOR_MIOU"] = "0"
    notes.append(
        "DEFECTFLOW_FLOOR_IMAGE_AUROC=0 and DEFECTFLOW_FLOOR_MIOU=0 in this process only: the benchmark compares "
        "pipelines and needs both models as champions whatever their quality (the gate is tested elsewhere)"
    )
    return notes
