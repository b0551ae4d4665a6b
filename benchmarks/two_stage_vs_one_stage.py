"""Two-stage against one-stage inspection on a labelled synthetic shift: image AUROC, pixel AUROC, images/s.

The method paper's central claim on our data. Two pipelines score the same frames:

* two-stage: the segmenter finds the component, the frame is cropped to it, and a detector trained on component
  crops scores the crop (the production path, ``defectflow score``);
* one-stage: a detector trained on whole good frames scores the whole frame resized to its square input
  (``defectflow score --one-stage``).

Each pipeline gets the training data that matches what it scores, the same backbone (resnet18), input size and
time budget, so the comparison is of the pipelines, not of how much training either got. Example::

    .venv/bin/python -m benchmarks.two_stage_vs_one_stage --quick                      # smoke run, minutes
    .venv/bin/python -m benchmarks.two_stage_vs_one_stage --frames 24 --minutes 4 --out benchmarks/out/tvo.json

What it does, all in ``--work`` (default ``benchmarks/out/two-stage-vs-one-stage``; both sub-folders it writes,
``data/`` and ``home/``, are replaced on every run, so a run never scores with a previous run's models):

1. Data. A labelled test shift (``synth.shift.generate_shift``: ``--frames`` frames of ``--size``, ``--defect-rate``,
   seed ``--seed``); the crop training set and the segmentation set (``synth.dataset.generate_dataset``, frames of
   the same size, seed + 1); and the one-stage training set: ``--train-good`` good frames from ``generate_shift``
   (defect rate 0, seed + 2), box-downscaled to a long side of ``max(512, --image-size)`` and written as
   ``train/good`` of an MVTec-layout folder. The downscale only saves disk and decoding time: the detector resizes
   every input to its square ``--image-size`` anyway, with antialiasing, so it sees (almost) the same pixels as
   when it scores a full-resolution frame.
2. Training through the real command line in a fresh workspace (``home/``, its own SQLite MLflow registry): the
   segmenter, the crop detector and the full-frame detector, each with the ``--minutes`` budget (``--seg-minutes``
   for the segmenter). Both detectors use the ``--backbone`` teacher (default the recommended
   ``mobilenetv2_100``) with pretrained weights from the usual sources (``DEFECTFLOW_TEACHER_WEIGHTS``,
   ``DEFECTFLOW_WEIGHTS_DIR``, timm; the run stops with the ways out when none has them; ``--teacher-weights
   none`` for random features); the segmenter is a resnet18 AMAM U-Net, pretrained where a source has resnet18
   weights and trained from scratch otherwise. The segmenter and the crop detector are promoted to champion; the
   full-frame detector is referenced by its version, ``models:/detector/<version>``. This process sets
   ``DEFECTFLOW_FLOOR_IMAGE_AUROC`` and ``DEFECTFLOW_FLOOR_MIOU`` to 0 (for itself only, and says so): the
   benchmark compares pipelines whatever their quality.
3. The shift is ingested twice, under two shift ids, so the heatmaps of both pipelines stay in the store side by
   side; each is scored by the ``nightly_scoring`` flow on a LocalCluster, as ``defectflow score`` runs it.
4. Metrics per pipeline:

   * image AUROC of ``raw_score`` against ``labels.csv`` (the normalised ``score`` is clipped to [0, 1], and its
     ties at 0 and 1 lose ranking information; it is in the JSON too). Every frame counts: a frame that was not
     scored (``no_component``: the segmenter found no part; ``failed``) ranks below every scored frame, i.e.
     "nothing wrong", which is what the pipeline reports for it; the table says how many there were. The JSON
     also has the AUROC of the scored frames alone.
   * pixel AUROC at full resolution: every pixel of every frame, heatmaps as the scoring flow stored them
     (float16, zero outside the scored region, all zero for a frame that was not scored) against the defect masks
     (``masks/defects/``). Exact, not subsampled: heatmaps are float16, so per-value counts of defect and normal
     pixels (65,536 bins) are accumulated frame by frame and the ROC is built from them, with ties counted one
     half like ``models.metrics.anomaly.auroc``, which it is checked against when there are at most
     ``CROSS_CHECK_PIXELS`` pixels (memory stays at one frame whatever the shift's size).
   * images/s of the flow's scoring phase (its summary: submit to last result over the frames it scored; cluster
     start, report and MLflow logging excluded) and, unless ``--no-bare``, of the bare per-batch computation
     (``tasks.score_frames`` called directly in this process with the models loaded: read, [segment, crop],
     detect, paste and write the heatmap), as ``benchmarks.scoring`` measures it.

It prints a markdown table ready to paste into the docs, the exact command, and writes everything as JSON with
``--out``. ``--quick`` is a smoke run (6 frames of 384x512, 0.3 min per model, 128 px inputs): it proves the
benchmark works end to end; its numbers mean nothing.
"""

from __future__ import annotations

import os

# Idle OpenMP threads must not spin on a shared machine (docs/segmenter.md); set before torch is imported.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import json
import math
import platform
import shlex
import shutil
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image

from models.detector.recipes import RECOMMENDED_BACKBONE
from models.metrics.streaming_roc import StreamingPixelRoc
from models.weight_sources import PRETRAINED, RANDOM_INIT, WeightsUnavailableError

REPO = Path(__file__).resolve().parents[1]
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


# ----------------------------------------------------------------------------------------------------- set-up


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options; unset sizes are filled from the ``full`` or ``quick`` preset."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
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


# ------------------------------------------------------------------------------------------------------ data


def downscale_long_side(image: np.ndarray, long_side: int) -> np.ndarray:
    """Box-downscale so the longer side is ``long_side``; never upscales."""
    h, w = image.shape[:2]
    if max(h, w) <= long_side:
        return image
    f = long_side / max(h, w)
    size = (max(1, round(w * f)), max(1, round(h * f)))
    return np.asarray(Image.fromarray(image).resize(size, Image.Resampling.BOX))


def generate_data(args: argparse.Namespace, data: Path) -> dict[str, Any]:
    """Test shift, crop and segmentation sets, and the whole-frame MVTec set; returns their paths and counts."""
    from synth.dataset import generate_dataset
    from synth.shift import generate_shift

    shift = generate_shift(
        data / "shift", images=args.frames, size=args.size, defect_rate=args.defect_rate, seed=args.seed
    )
    say(f"test shift: {shift.images} frames {args.size[0]}x{args.size[1]}, {shift.defects} defective {shift.by_type}")
    crops = generate_dataset(
        data / "crops",
        train_good=args.train_good,
        test_good=args.test_good,
        test_defect_per_type=args.test_defect,
        seg_images=args.seg_images,
        size=args.size,
        seed=args.seed + 1,
    )
    say(f"crop set: {crops.train_good} good training crops; segmentation set: {crops.seg_images} frames")

    long_side = max(512, args.image_size)
    source = generate_shift(
        data / "fullframe-source", images=args.train_good, size=args.size, defect_rate=0.0, seed=args.seed + 2
    )
    good_dir = data / "fullframe" / "train" / "good"
    good_dir.mkdir(parents=True)
    for path in sorted(source.frames_dir.glob("frame_*.png")):
        with Image.open(path) as image:
            pixels = np.asarray(image.convert("RGB"))
        Image.fromarray(downscale_long_side(pixels, long_side)).save(good_dir / path.name)
    shutil.rmtree(source.out)  # only the downscaled copies are needed
    say(f"whole-frame set: {args.train_good} good frames, downscaled to long side {long_side}")
    return {
        "shift_dir": shift.out,
        "frames_dir": shift.frames_dir,
        "labels_csv": shift.labels_csv,
        "defect_masks_dir": shift.defect_masks_dir,
        "defects": shift.defects,
        "defects_by_type": shift.by_type,
        "mvtec_crops": crops.mvtec_dir,
        "segmentation": crops.segmentation_dir,
        "mvtec_fullframe": data / "fullframe",
        "fullframe_long_side": long_side,
    }


# ------------------------------------------------------------------------------------------- training, scoring


def run_cli(arguments: list[str]) -> None:
    """Run one ``defectflow`` command in this process, saying which; a non-zero exit stops the benchmark."""
    from flows.cli import invoke

    say("defectflow " + shlex.join(arguments))
    invoke(arguments)


def champion_or_exit(model: str) -> str:
    """The champion version of ``model``; the benchmark cannot go on without it."""
    from storage.registry import CHAMPION, alias_version
    from storage.settings import load_settings

    version = alias_version(load_settings(), model, CHAMPION)
    if version is None:
        raise SystemExit(f"{model} was not promoted to champion; see the promotion output above")
    return version


def challenger_version(model: str) -> str:
    """The version the last training registered (it carries the ``challenger`` alias)."""
    from storage.registry import CHALLENGER, alias_version
    from storage.settings import load_settings

    version = alias_version(load_settings(), model, CHALLENGER)
    if version is None:
        raise SystemExit(f"training registered no {model}@{CHALLENGER}")
    return version


def train_models(args: argparse.Namespace, paths: dict[str, Any], home: Path) -> dict[str, str]:
    """Train and register the three models through the CLI; promote the two-stage pair. Returns the versions."""
    common = ["--epochs", EPOCHS, "--home", str(home)]
    detector = ["--image-size", str(args.image_size), "--max-minutes", str(args.minutes), "--backbone", args.backbone]
    detector += ["--teacher-weights", args.teacher_weights]
    segmenter_options = ["--image-size", str(args.seg_image_size), "--max-minutes", str(args.seg_minutes)]
    segmenter_options += ["--backbone", SEG_BACKBONE, "--encoder-weights", args.encoder_weights]
    run_cli(["train", "segmenter", "--data", str(paths["segmentation"]), *segmenter_options, *common])
    run_cli(["promote", "--model", "segmenter", "--eval-data", str(paths["segmentation"]), "--home", str(home)])
    segmenter = champion_or_exit("segmenter")
    run_cli(["train", "detector", "--data", str(paths["mvtec_crops"]), *detector, *common])
    run_cli(["promote", "--model", "detector", "--eval-data", str(paths["mvtec_crops"]), "--home", str(home)])
    crop_detector = champion_or_exit("detector")
    run_cli(["train", "detector", "--data", str(paths["mvtec_fullframe"]), *detector, *common])
    fullframe_detector = challenger_version("detector")
    if fullframe_detector == crop_detector:
        raise SystemExit("the full-frame detector did not register a new version")
    return {"segmenter": segmenter, "crop_detector": crop_detector, "fullframe_detector": fullframe_detector}


@dataclass
class Pipeline:
    """One of the two pipelines as the benchmark runs and reports it."""

    name: str
    shift_id: str
    segmenter: str | None
    detector: str
    trained_on: str
    summary: dict[str, Any] = field(default_factory=dict)
    flow_seconds: float = math.nan
    bare_seconds: float | None = None
    metrics: dict[str, Any] = field(default_factory=dict)


def time_bare(pipeline: Pipeline, batch_size: int) -> float:
    """Seconds of the bare per-batch computation over the shift (benchmarks.scoring's bare path).

    The heatmaps it writes are overwritten by the flow that runs next.
    """
    from benchmarks.scoring import time_bare_scoring
    from flows.scoring import pin_model
    from storage.settings import load_settings
    from storage.tables import read_manifest

    settings = load_settings()
    manifest = read_manifest(settings.results_dir(pipeline.shift_id))
    ids = sorted(manifest.loc[manifest["status"] == "ingested", "image_id"])
    segmenter = pin_model(settings, pipeline.segmenter, "segmenter") if pipeline.segmenter else None
    detector = pin_model(settings, pipeline.detector, "detector")
    return time_bare_scoring(settings, pipeline.shift_id, ids, segmenter, detector, batch_size)


def score_with_flow(pipeline: Pipeline, args: argparse.Namespace) -> None:
    """Score the pipeline's shift with ``nightly_scoring`` on a LocalCluster, as ``defectflow score`` does."""
    from flows.cli.base import _configure_logging, run_flow
    from flows.runtime import local_worker_count
    from flows.scoring import DEFAULT_SEGMENTER, nightly_scoring
    from storage.settings import load_settings

    _configure_logging(False)
    settings = load_settings()
    workers = local_worker_count(settings, args.workers)
    start = time.perf_counter()
    pipeline.summary = run_flow(
        nightly_scoring,
        settings,
        None,
        args.workers,
        shift_id=pipeline.shift_id,
        segmenter=pipeline.segmenter or DEFAULT_SEGMENTER,
        detector=pipeline.detector,
        home=str(settings.home),
        batch_size=args.batch_size,
        one_stage=pipeline.segmenter is None,
        rescore=False,
        workers=workers,
    )
    pipeline.flow_seconds = time.perf_counter() - start


# ----------------------------------------------------------------------------------------------------- metrics


def read_mask(path: Path) -> np.ndarray:
    """A 0/255 mask PNG as bool."""
    with Image.open(path) as image:
        return np.asarray(image.convert("L")) > 0


def safe_auroc(truth: np.ndarray, scores: np.ndarray) -> float:
    """``models.metrics.anomaly.auroc``, NaN when one class is missing."""
    from models.metrics.anomaly import auroc

    return auroc(truth, scores) if 0 < truth.sum() < truth.size else math.nan


def evaluate(pipeline: Pipeline, paths: dict[str, Any], size: tuple[int, int]) -> dict[str, Any]:
    """Image and pixel metrics of one scored shift against the synthetic ground truth (frames of ``size``)."""
    from storage.frame_store import FrameStore
    from storage.settings import load_settings
    from storage.tables import read_manifest, read_scores

    settings = load_settings()
    results = settings.results_dir(pipeline.shift_id)
    manifest = read_manifest(results)[["image_id", "source_path"]]
    scores = read_scores(results)
    labels = pd.read_csv(paths["labels_csv"])
    frames = labels.merge(manifest, left_on="file", right_on="source_path", how="left").merge(
        scores, on="image_id", how="left"
    )
    frames["status"] = frames["status"].fillna("not ingested")
    scored = (frames["status"] == "scored").to_numpy()
    truth = (frames["label"] == "defect").to_numpy()
    score = frames["score"].astype(float).to_numpy()
    raw = frames["raw_score"].astype(float).to_numpy()
    raw_floor = np.nanmin(raw[scored]) - 1.0 if scored.any() else 0.0  # below every scored frame

    store = FrameStore(settings.store_path)
    roc = StreamingPixelRoc()
    keep_for_check: list[tuple[np.ndarray, np.ndarray]] = []
    total_pixels = len(frames) * size[0] * size[1]
    check = total_pixels <= CROSS_CHECK_PIXELS
    for row, is_scored in zip(frames.itertuples(index=False), scored, strict=True):
        mask = read_mask(paths["defect_masks_dir"] / row.file)
        heatmap = store.heatmap(pipeline.shift_id, row.image_id)[...] if is_scored else None
        if heatmap is None:  # not scored: the pipeline reports no anomalous pixel
            heatmap = np.zeros(mask.shape, dtype=np.float16)
        if heatmap.shape != mask.shape:
            raise ValueError(f"{row.file}: heatmap {heatmap.shape} and mask {mask.shape} differ in shape")
        roc.add(heatmap, mask)
        if check:
            keep_for_check.append((mask.ravel(), heatmap.astype(np.float32).ravel()))
    pixel_auroc = roc.auroc()
    checked = None
    if check and keep_for_check:
        reference = safe_auroc(
            np.concatenate([m for m, _ in keep_for_check]), np.concatenate([h for _, h in keep_for_check])
        )
        if not (math.isnan(reference) and math.isnan(pixel_auroc)) and abs(reference - pixel_auroc) > 1e-9:
            raise AssertionError(f"pixel AUROC {pixel_auroc} differs from models.metrics.anomaly {reference}")
        checked = reference

    counts = frames["status"].value_counts().to_dict()
    return {
        "frames": len(frames),
        "defective": int(truth.sum()),
        "status_counts": {str(k): int(v) for k, v in counts.items()},
        "not_scored": int((~scored).sum()),
        # raw scores rank the frames: the normalised score is clipped to [0, 1] and ties there lose information
        "image_auroc": safe_auroc(truth, np.where(scored, raw, raw_floor)),
        "image_auroc_scored_only": safe_auroc(truth[scored], raw[scored]),
        "image_auroc_normalised_score": safe_auroc(truth, np.where(scored, score, 0.0)),
        "pixel_auroc": pixel_auroc,
        "pixel_auroc_cross_checked": checked,
        "pixels": total_pixels,
        "defect_pixels": int(roc.positives.sum()),
    }


# ------------------------------------------------------------------------------------------------------ report


def without_nan(value: Any) -> Any:
    """``value`` with NaN floats as ``None``, so the JSON is standard (NaN is not JSON)."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: without_nan(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [without_nan(v) for v in value]
    return value


def fmt(value: float | None, digits: int = 3) -> str:
    """A number for the table; n/a for missing or NaN."""
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def markdown_table(pipelines: list[Pipeline]) -> str:
    """The results as a markdown table."""
    header = (
        "| pipeline | detector trained on | image AUROC | pixel AUROC (full res.) | images/s (flow) "
        "| images/s (bare) | not scored |"
    )
    lines = [header, "|---|---|---:|---:|---:|---:|---|"]
    for p in pipelines:
        m = p.metrics
        bare = m["frames"] / p.bare_seconds if p.bare_seconds else None
        statuses = {k: v for k, v in m["status_counts"].items() if k != "scored"}
        not_scored = ", ".join(f"{v} {k}" for k, v in statuses.items()) or "0"
        lines.append(
            f"| {p.name} | {p.trained_on} | {fmt(m['image_auroc'])} | {fmt(m['pixel_auroc'])} "
            f"| {fmt(p.summary['images_per_second'], 2)} | {fmt(bare, 2)} | {not_scored} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark end to end and print (and optionally write) the comparison."""
    args = parse_args(argv)
    command = ".venv/bin/python -m benchmarks.two_stage_vs_one_stage " + shlex.join(
        sys.argv[1:] if argv is None else argv
    )
    started = time.perf_counter()
    steps: dict[str, float] = {}
    data, home = prepare_work(args.work)
    notes = isolate_environment(home)
    for note in notes:
        say(note)
    say(f"detector teacher weights: {args.teacher_weights}; segmenter encoder weights: {args.encoder_weights}")

    from flows.runtime import prefect_api

    clock = time.perf_counter()
    paths = generate_data(args, data)
    steps["data"] = time.perf_counter() - clock
    with prefect_api():  # one temporary Prefect server for every command of the run
        clock = time.perf_counter()
        versions = train_models(args, paths, home)
        steps["training_and_promotion"] = time.perf_counter() - clock
        crops = f"{args.train_good} component crops"
        pipelines = [
            Pipeline(
                "two-stage: segment → crop → detect",
                SHIFT_TWO_STAGE,
                "models:/segmenter@champion",
                "models:/detector@champion",
                crops,
            ),
            Pipeline(
                "one-stage: whole frame resized",
                SHIFT_ONE_STAGE,
                None,
                f"models:/detector/{versions['fullframe_detector']}",
                f"{args.train_good} whole good frames",
            ),
        ]
        for pipeline in pipelines:
            clock = time.perf_counter()
            ingest = ["ingest", str(paths["frames_dir"]), "--shift", pipeline.shift_id, "--home", str(home)]
            run_cli(ingest + (["--workers", str(args.workers)] if args.workers else []))
            steps[f"ingest {pipeline.shift_id}"] = time.perf_counter() - clock
        for pipeline in pipelines:
            if not args.no_bare:
                say(f"bare per-batch computation: {pipeline.name}")
                pipeline.bare_seconds = time_bare(pipeline, args.batch_size)
            say(f"nightly_scoring flow: {pipeline.name}")
            score_with_flow(pipeline, args)
            steps[f"score {pipeline.shift_id}"] = pipeline.flow_seconds + (pipeline.bare_seconds or 0.0)
    for pipeline in pipelines:
        clock = time.perf_counter()
        pipeline.metrics = evaluate(pipeline, paths, args.size)
        steps[f"metrics {pipeline.shift_id}"] = time.perf_counter() - clock
    total = time.perf_counter() - started

    import torch

    h, w = args.size
    table = markdown_table(pipelines)
    print()
    print(
        f"## Two-stage vs one-stage on a synthetic shift ({args.frames} frames of {h}x{w}, "
        f"{paths['defects']} defective)"
    )
    print()
    print(table)
    print()
    print(
        f"Detectors: {args.backbone} teacher ({args.teacher_weights}) reverse distillation at {args.image_size} "
        f"px, {args.minutes:g} min each ({args.train_good} training images each); segmenter: {SEG_BACKBONE} AMAM "
        f"U-Net ({args.encoder_weights}) at {args.seg_image_size} px, {args.seg_minutes:g} min ({args.seg_images} "
        "frames). "
        f"Versions: segmenter v{versions['segmenter']}, crop detector v{versions['crop_detector']}, full-frame "
        f"detector v{versions['fullframe_detector']}. Image AUROC on raw scores; frames not scored rank lowest and "
        f"get an all-zero heatmap. "
        f"images/s (flow): scoring phase of nightly_scoring on a LocalCluster; (bare): tasks.score_frames in one "
        f"process. {os.cpu_count()} CPU cores, torch {torch.__version__}, "
        f"{'CUDA' if torch.cuda.is_available() else 'CPU'}."
    )
    print()
    print(f"Command: `{command}`")
    print()
    for p in pipelines:
        m = p.metrics
        print(
            f"{p.name}: image AUROC scored frames only {fmt(m['image_auroc_scored_only'])}, on the normalised "
            f"score {fmt(m['image_auroc_normalised_score'])}; "
            f"flow wall time incl. cluster start {p.flow_seconds:.1f} s; "
            f"pixel AUROC over {m['pixels']:,} pixels ({m['defect_pixels']:,} defect)"
            + (", equal to models.metrics.anomaly.auroc" if m["pixel_auroc_cross_checked"] is not None else "")
        )
    print("steps (s): " + ", ".join(f"{k} {v:.0f}" for k, v in steps.items()) + f"; total {total / 60:.1f} min")

    if args.out:
        result = {
            "command": command,
            "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "arguments": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
            "environment": {
                "cpu_count": os.cpu_count(),
                "torch": torch.__version__,
                "cuda": torch.cuda.is_available(),
                "python": platform.python_version(),
                "platform": platform.platform(),
            },
            "notes": [*notes, f"teacher weights {args.teacher_weights}, encoder weights {args.encoder_weights}"],
            "versions": versions,
            "fullframe_long_side": paths["fullframe_long_side"],
            "defects_by_type": paths["defects_by_type"],
            "pipelines": [
                {
                    "name": p.name,
                    "shift_id": p.shift_id,
                    "segmenter": p.segmenter,
                    "detector": p.detector,
                    "trained_on": p.trained_on,
                    **p.metrics,
                    "images_per_second_flow": p.summary["images_per_second"],
                    "flow_wall_seconds": p.flow_seconds,
                    "images_per_second_bare": p.metrics["frames"] / p.bare_seconds if p.bare_seconds else None,
                    "bare_seconds": p.bare_seconds,
                    "flow_summary": p.summary,
                }
                for p in pipelines
            ],
            "markdown": table,
            "step_seconds": steps,
            "total_seconds": total,
        }
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(without_nan(result), indent=2, default=str) + "\n")
        print(f"results: {args.out}")


if __name__ == "__main__":
    main()
