"""The benchmark's results as a markdown table, explanatory text and JSON."""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from benchmarks.two_stage.options import SEG_BACKBONE
from benchmarks.two_stage.runs import Pipeline


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
            f"| {fmt(p.summary.images_per_second, 2)} | {fmt(bare, 2)} | {not_scored} |"
        )
    return "\n".join(lines)


@dataclass
class BenchmarkRun:
    """Everything a finished run reports: its options, command, models, pipelines and step times."""

    args: argparse.Namespace
    command: str
    notes: list[str]
    paths: dict[str, Any]
    versions: dict[str, str]
    pipelines: list[Pipeline]
    steps: dict[str, float]
    total: float
    table: str = field(init=False)

    def __post_init__(self) -> None:
        self.table = markdown_table(self.pipelines)


def print_report(run: BenchmarkRun) -> None:
    """Print the table with its caption and the exact command (ready for the docs), then per-pipeline details."""
    import torch

    args = run.args
    h, w = args.size
    print()
    print(
        f"## Two-stage vs one-stage on a synthetic shift ({args.frames} frames of {h}x{w}, "
        f"{run.paths['defects']} defective)"
    )
    print()
    print(run.table)
    print()
    print(
        f"Detectors: {args.backbone} teacher ({args.teacher_weights}) reverse distillation at {args.image_size} "
        f"px, {args.minutes:g} min each ({args.train_good} training images each); segmenter: {SEG_BACKBONE} AMAM "
        f"U-Net ({args.encoder_weights}) at {args.seg_image_size} px, {args.seg_minutes:g} min ({args.seg_images} "
        "frames). "
        f"Versions: segmenter v{run.versions['segmenter']}, crop detector v{run.versions['crop_detector']}, "
        f"full-frame detector v{run.versions['fullframe_detector']}. Image AUROC on raw scores; frames not scored "
        "rank lowest and get an all-zero heatmap. "
        f"images/s (flow): scoring phase of nightly_scoring on a LocalCluster; (bare): tasks.score_frames in one "
        f"process. {os.cpu_count()} CPU cores, torch {torch.__version__}, "
        f"{'CUDA' if torch.cuda.is_available() else 'CPU'}."
    )
    print()
    print(f"Command: `{run.command}`")
    print()
    print_details(run)


def print_details(run: BenchmarkRun) -> None:
    """The numbers the table leaves out (other AUROC variants, flow wall time, pixel counts) and step times."""
    for p in run.pipelines:
        m = p.metrics
        print(
            f"{p.name}: image AUROC scored frames only {fmt(m['image_auroc_scored_only'])}, on the normalised "
            f"score {fmt(m['image_auroc_normalised_score'])}; "
            f"flow wall time incl. cluster start {p.flow_seconds:.1f} s; "
            f"pixel AUROC over {m['pixels']:,} pixels ({m['defect_pixels']:,} defect)"
            + (", equal to models.metrics.anomaly.auroc" if m["pixel_auroc_cross_checked"] is not None else "")
        )
    steps = ", ".join(f"{k} {v:.0f}" for k, v in run.steps.items())
    print(f"steps (s): {steps}; total {run.total / 60:.1f} min")


def write_results(run: BenchmarkRun, out: Path) -> None:
    """Write the run as JSON to ``out`` (NaN as null), with the environment it ran in."""
    import torch

    args = run.args
    result = {
        "command": run.command,
        "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "arguments": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "environment": {
            "cpu_count": os.cpu_count(),
            "torch": torch.__version__,
            "cuda": torch.cuda.is_available(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "notes": [*run.notes, f"teacher weights {args.teacher_weights}, encoder weights {args.encoder_weights}"],
        "versions": run.versions,
        "fullframe_long_side": run.paths["fullframe_long_side"],
        "defects_by_type": run.paths["defects_by_type"],
        "pipelines": [pipeline_record(p) for p in run.pipelines],
        "markdown": run.table,
        "step_seconds": run.steps,
        "total_seconds": run.total,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(without_nan(result), indent=2, default=str) + "\n")
    print(f"results: {out}")


def pipeline_record(p: Pipeline) -> dict[str, Any]:
    """One pipeline's entry in the JSON: what it ran, its metrics and both throughputs."""
    return {
        "name": p.name,
        "shift_id": p.shift_id,
        "segmenter": p.segmenter,
        "detector": p.detector,
        "trained_on": p.trained_on,
        **p.metrics,
        "images_per_second_flow": p.summary.images_per_second,
        "flow_wall_seconds": p.flow_seconds,
        "images_per_second_bare": p.metrics["frames"] / p.bare_seconds if p.bare_seconds else None,
        "bare_seconds": p.bare_seconds,
        "flow_summary": asdict(p.summary),
    }
