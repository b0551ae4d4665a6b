"""Training, ingest and scoring of both pipelines through the real command line and flows."""

from __future__ import annotations

import argparse
import math
import shlex
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.two_stage.options import EPOCHS, SEG_BACKBONE, SHIFT_ONE_STAGE, SHIFT_TWO_STAGE, say
from flows.results import ScoringResult


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
    summary: ScoringResult | None = None  # the scoring flow's, once it ran
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
    seconds, _phases = time_bare_scoring(settings, pipeline.shift_id, ids, segmenter, detector, batch_size)
    return seconds


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


def make_pipelines(args: argparse.Namespace, versions: dict[str, str]) -> list[Pipeline]:
    """The two pipelines: champions segment and detect crops; the full-frame detector is pinned by version."""
    return [
        Pipeline(
            "two-stage: segment → crop → detect",
            SHIFT_TWO_STAGE,
            "models:/segmenter@champion",
            "models:/detector@champion",
            f"{args.train_good} component crops",
        ),
        Pipeline(
            "one-stage: whole frame resized",
            SHIFT_ONE_STAGE,
            None,
            f"models:/detector/{versions['fullframe_detector']}",
            f"{args.train_good} whole good frames",
        ),
    ]


def ingest_shifts(
    pipelines: list[Pipeline], frames_dir: Path, args: argparse.Namespace, home: Path, steps: dict[str, float]
) -> None:
    """Ingest the test shift once per pipeline, under its own shift id, so both sets of heatmaps are kept."""
    for pipeline in pipelines:
        clock = time.perf_counter()
        ingest = ["ingest", str(frames_dir), "--shift", pipeline.shift_id, "--home", str(home)]
        run_cli(ingest + (["--workers", str(args.workers)] if args.workers else []))
        steps[f"ingest {pipeline.shift_id}"] = time.perf_counter() - clock


def score_shifts(pipelines: list[Pipeline], args: argparse.Namespace, steps: dict[str, float]) -> None:
    """Time the bare computation (unless ``--no-bare``), then score each shift with the flow.

    The bare run goes first because the flow that follows overwrites the heatmaps it wrote.
    """
    for pipeline in pipelines:
        if not args.no_bare:
            say(f"bare per-batch computation: {pipeline.name}")
            pipeline.bare_seconds = time_bare(pipeline, args.batch_size)
        say(f"nightly_scoring flow: {pipeline.name}")
        score_with_flow(pipeline, args)
        steps[f"score {pipeline.shift_id}"] = pipeline.flow_seconds + (pipeline.bare_seconds or 0.0)
