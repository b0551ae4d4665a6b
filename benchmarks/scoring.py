"""Scoring throughput: the ``nightly_scoring`` flow on a LocalCluster against the bare path in one process.

    .venv/bin/python -m benchmarks.scoring --home defectflow-demo --shift shift-demo

Needs a workspace with an ingested shift and champion models (``make demo`` makes one; ingest a bigger shift into
it for a throughput figure that is not dominated by the cluster start, e.g. the 200 frames ``benchmarks.ingest``
generates). With ``DEFECTFLOW_DASK_ADDRESS`` (and ``PREFECT_API_URL``) set, the flow runs on that long-lived
cluster instead, whose workers stay warm between runs; run it twice to see a warm run. The bare path calls the
same per-batch computation (read from zarr, segment, crop, detect in one batch, paste and write the heatmap)
directly in this process and draws no overlays; the flow adds Prefect and Dask, and draws the report's overlays
(its batches those of the flagged frames, phase ``overlay``; its finish the rest). Prints images/s of both, the
ratio flow/bare, the peak memory of the flow process and of a worker, whether the flow process imported torch (it
should not: issue #14), where the time went (the flow's own steps, and the seconds per phase of the batches,
summed over the workers, against the bare path's), and the load average, since the machine may be shared.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.memory import PeakMemory
from flows.batching import batches
from flows.results import ScoringResult
from flows.runtime import dask_task_runner, local_worker_count, prefect_api
from flows.scoring import DEFAULT_DETECTOR, DEFAULT_SEGMENTER, nightly_scoring, pin_model
from storage.settings import Settings, load_settings
from storage.tables import read_manifest
from tasks.model_ref import ModelRef
from tasks.score_frames import score_frames
from tasks.scoring_phases import PHASES, add_seconds

LOCAL = "LocalCluster"


def time_bare_scoring(
    settings: Settings,
    shift_id: str,
    ids: list[str],
    segmenter: ModelRef | None,
    detector: ModelRef,
    batch_size: int,
) -> tuple[float, dict[str, float]]:
    """Seconds of the bare per-batch computation over ``ids`` in this process, models loaded before the clock, and
    its seconds per phase.

    Part tables go to a scratch folder that is removed afterwards; the heatmaps land in the shift's store.
    """
    phases: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="bare-scores-") as scratch:
        score_frames.fn(str(settings.store_path), scratch, shift_id, ids[:1], segmenter, detector)  # load models
        start = time.perf_counter()
        for chunk in batches(ids, batch_size):
            batch = score_frames.fn(str(settings.store_path), scratch, shift_id, chunk, segmenter, detector)
            add_seconds(phases, batch.seconds)
        return time.perf_counter() - start, phases


def print_phases(end_to_end: float, summary: ScoringResult, bare_phases: dict[str, float], cluster: str) -> None:
    """Where the time went: the flow's own steps (wall seconds), then the batches' phases, summed over workers."""
    steps = summary.seconds
    outside = end_to_end - sum(steps.values())
    print(f"\n{'flow step':<58}{'seconds':>10}")
    start = "start: Prefect flow run, LocalCluster and workers, teardown" if cluster == LOCAL else "start: flow run"
    print(f"{start:<58}{outside:>10.1f}")
    for step, what in (
        ("plan", "plan: manifest, pin the models, merge earlier parts"),
        ("preload", "preload: workers import torch, load and warm the models"),
        ("batches", "batches: scoring the frames (wall)"),
        ("finish", "finish: scores table, other overlays, MLflow, report"),
    ):
        print(f"{what:<58}{steps[step]:>10.1f}")
    flow_phases = summary.phase_seconds
    print(f"\n{'batch phase (seconds summed over workers)':<44}{'flow':>10}{'bare':>10}")
    for phase in PHASES:
        print(f"{phase:<44}{flow_phases.get(phase, 0.0):>10.1f}{bare_phases.get(phase, 0.0):>10.1f}")
    total = (sum(flow_phases.values()), sum(bare_phases.values()))
    print(f"{'total':<44}{total[0]:>10.1f}{total[1]:>10.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--home", type=Path, required=True)
    parser.add_argument("--shift", required=True)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--workers", type=int, default=None)
    args = parser.parse_args()
    settings = load_settings(args.home)
    manifest = read_manifest(settings.results_dir(args.shift))
    ids = sorted(manifest.loc[manifest["status"] == "ingested", "image_id"])
    segmenter = pin_model(settings, DEFAULT_SEGMENTER, "segmenter")
    detector = pin_model(settings, DEFAULT_DETECTOR, "detector")
    workers = local_worker_count(settings, args.workers)
    # DEFECTFLOW_DASK_ADDRESS runs the flow on that long-lived cluster (its workers stay warm between runs)
    cluster = f"cluster at {settings.dask_address}" if settings.dask_address else LOCAL

    # the flow first, so that its process's peak memory does not include the models the bare path loads here
    with prefect_api(), PeakMemory() as memory:
        runner = dask_task_runner(settings, workers=workers)
        start = time.perf_counter()
        summary = nightly_scoring.with_options(task_runner=runner)(
            shift_id=args.shift, home=str(settings.home), batch_size=args.batch_size, rescore=True, workers=workers
        )
        flow_seconds = time.perf_counter() - start

    flow_imported = sorted(m for m in ("torch", "torchvision", "timm", "matplotlib", "mlflow") if m in sys.modules)
    with PeakMemory() as bare_memory:
        bare_seconds, bare_phases = time_bare_scoring(settings, args.shift, ids, segmenter, detector, args.batch_size)

    n = len(ids)
    print(f"\nscoring benchmark: {n} frames of shift {args.shift}, batch {args.batch_size}, {workers} workers (CPU)")
    print(f"{'path':<40}{'images/s':>10}{'seconds':>10}")
    print(f"{'bare: one process, models loaded':<40}{n / bare_seconds:>10.2f}{bare_seconds:>10.1f}")
    print(f"{'nightly_scoring flow, ' + cluster:<40}{n / flow_seconds:>10.2f}{flow_seconds:>10.1f}")
    print(f"{'  (flow, scoring phase only)':<40}{summary.images_per_second:>10.2f}")
    print(f"ratio flow / bare (end to end, cluster start and model loads included): {bare_seconds / flow_seconds:.2f}")
    print(f"peak RSS: bare process {bare_memory.flow_peak_mib:.0f} MiB, flow process {memory.flow_peak_mib:.0f} MiB, ")
    worker = f"{memory.worker_peak_mib:.0f} MiB" if cluster == LOCAL else "not measured (not a child of this process)"
    print(f"          a worker {worker}")
    print(f"heavy modules the flow process imported: {', '.join(flow_imported) or 'none'}")
    print_phases(flow_seconds, summary, bare_phases, cluster)
    print(f"\nload average (1, 5, 15 min) at the end: {', '.join(f'{x:.1f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
