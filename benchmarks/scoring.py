"""Scoring throughput: the ``nightly_scoring`` flow on a LocalCluster against the bare path in one process.

    .venv/bin/python -m benchmarks.scoring --home defectflow-demo --shift shift-demo

Needs a workspace with an ingested shift and champion models (``make demo`` makes one; ingest a bigger shift into
it for a throughput figure that is not dominated by the cluster start, e.g. the 200 frames ``benchmarks.ingest``
generates). The bare path calls the
same per-batch computation (read from zarr, segment, crop, detect in one batch, paste and write the heatmap)
directly in this process; the flow adds Prefect and Dask. Prints images/s of both, the ratio flow/bare, and the
peak memory of the flow process and of a worker.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from benchmarks.memory import PeakMemory
from flows.batching import batches
from flows.runtime import dask_task_runner, local_worker_count, prefect_api
from flows.scoring import DEFAULT_DETECTOR, DEFAULT_SEGMENTER, nightly_scoring, pin_model
from storage.settings import Settings, load_settings
from storage.tables import read_manifest
from tasks.model_cache import ModelRef
from tasks.score_frames import score_frames


def time_bare_scoring(
    settings: Settings,
    shift_id: str,
    ids: list[str],
    segmenter: ModelRef | None,
    detector: ModelRef,
    batch_size: int,
) -> float:
    """Seconds of the bare per-batch computation over ``ids`` in this process, models loaded before the clock.

    Part tables go to a scratch folder that is removed afterwards; the heatmaps land in the shift's store.
    """
    with tempfile.TemporaryDirectory(prefix="bare-scores-") as scratch:
        score_frames.fn(str(settings.store_path), scratch, shift_id, ids[:1], segmenter, detector)  # load models
        start = time.perf_counter()
        for chunk in batches(ids, batch_size):
            score_frames.fn(str(settings.store_path), scratch, shift_id, chunk, segmenter, detector)
        return time.perf_counter() - start


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

    # the flow first, so that its process's peak memory does not include the models the bare path loads here
    with prefect_api(), PeakMemory() as memory:
        runner = dask_task_runner(settings, workers=workers)
        start = time.perf_counter()
        summary = nightly_scoring.with_options(task_runner=runner)(
            shift_id=args.shift, home=str(settings.home), batch_size=args.batch_size, rescore=True, workers=workers
        )
        flow_seconds = time.perf_counter() - start

    with PeakMemory() as bare_memory:
        bare_seconds = time_bare_scoring(settings, args.shift, ids, segmenter, detector, args.batch_size)

    n = len(ids)
    print(f"\nscoring benchmark: {n} frames of shift {args.shift}, batch {args.batch_size}, {workers} workers (CPU)")
    print(f"{'path':<40}{'images/s':>10}{'seconds':>10}")
    print(f"{'bare: one process, models loaded':<40}{n / bare_seconds:>10.2f}{bare_seconds:>10.1f}")
    print(f"{'nightly_scoring flow, LocalCluster':<40}{n / flow_seconds:>10.2f}{flow_seconds:>10.1f}")
    print(f"{'  (flow, scoring phase only)':<40}{summary['images_per_second']:>10.2f}")
    print(f"ratio flow / bare (end to end, cluster start and model loads included): {bare_seconds / flow_seconds:.2f}")
    print(f"peak RSS: bare process {bare_memory.flow_peak_mib:.0f} MiB, flow process {memory.flow_peak_mib:.0f} MiB, ")
    print(f"          a worker {memory.worker_peak_mib:.0f} MiB")


if __name__ == "__main__":
    main()
