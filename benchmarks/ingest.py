"""Ingest throughput: the ``ingest_shift`` flow on a LocalCluster against a bare decode-and-write loop.

    .venv/bin/python -m benchmarks.ingest --frames 200 --size 1536 2048

Prints frames/s and MB/s (of source files) for both, their ratio, and the peak memory of the flow process and of
a worker. The flow is run on the full shift and on its first half, so that a flow-process peak that does not grow
with the shift shows that frames stream through the workers.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from benchmarks.memory import PeakMemory
from flows.ingest import ingest_shift
from flows.runtime import dask_task_runner, local_worker_count, prefect_api
from models.imaging import decode_image
from storage.frame_files import list_source_files
from storage.frame_store import FrameStore
from storage.settings import load_settings


def bare_loop(source: Path, files: list[str], store_path: Path, max_pixels: int) -> float:
    """Decode and write every frame in this process, one after another; returns seconds."""
    store = FrameStore(store_path)
    store.ensure_shift("bare")
    start = time.perf_counter()
    for index, relative in enumerate(files):
        frame = decode_image((source / relative).read_bytes(), Path(relative).suffix, max_pixels)
        store.write_image("bare", f"f{index:05d}", frame.pixels, {})
    return time.perf_counter() - start


def flow_run(source: Path, home: Path, workers: int) -> tuple[float, PeakMemory]:
    """The real flow on a fresh LocalCluster; returns seconds (cluster start included) and peak memory."""
    settings = load_settings(home)
    runner = dask_task_runner(settings, workers=workers)
    with PeakMemory() as memory:
        start = time.perf_counter()
        ingest_shift.with_options(task_runner=runner)(source=str(source), shift_id="bench", home=str(home))
        seconds = time.perf_counter() - start
    return seconds, memory


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=200)
    parser.add_argument("--size", type=int, nargs=2, default=(1536, 2048), metavar=("H", "W"))
    parser.add_argument("--data", type=Path, default=Path("benchmarks/out/ingest-shift"))
    parser.add_argument("--workers", type=int, default=None)
    args = parser.parse_args()

    frames_dir = args.data / "frames"
    if len(list(frames_dir.glob("*.png"))) != args.frames:
        from synth.shift import generate_shift

        print(f"generating {args.frames} synthetic frames of {args.size[0]}x{args.size[1]} in {args.data} ...")
        shutil.rmtree(args.data, ignore_errors=True)
        generate_shift(args.data, images=args.frames, size=tuple(args.size), defect_rate=0.1, seed=1)
    files = list_source_files(frames_dir)
    megabytes = sum((frames_dir / f).stat().st_size for f in files) / 1e6
    half_dir = Path(tempfile.mkdtemp(prefix="ingest-half-"))
    for relative in files[: len(files) // 2]:
        (half_dir / relative).parent.mkdir(parents=True, exist_ok=True)
        (half_dir / relative).symlink_to((frames_dir / relative).resolve())

    settings = load_settings(tempfile.mkdtemp(prefix="ingest-bench-"))
    workers = local_worker_count(settings, args.workers)
    with prefect_api():
        half_seconds, half_memory = flow_run(half_dir, Path(tempfile.mkdtemp(prefix="ingest-half-home-")), workers)
        flow_seconds, memory = flow_run(frames_dir, Path(tempfile.mkdtemp(prefix="ingest-home-")), workers)
    bare_seconds = bare_loop(frames_dir, files, Path(tempfile.mkdtemp(prefix="ingest-bare-")) / "s.zarr", 10**9)

    n = len(files)

    def row(name: str, seconds: float) -> str:
        return f"{name:<34}{n / seconds:>10.2f}{megabytes / seconds:>10.1f}{seconds:>10.1f}"

    print(
        f"\ningest benchmark: {n} frames of {args.size[0]}x{args.size[1]}, {megabytes:.0f} MB of PNG, {workers} workers"
    )
    print(f"{'path':<34}{'frames/s':>10}{'MB/s':>10}{'seconds':>10}")
    print(row("bare decode+write, 1 process", bare_seconds))
    print(row("ingest_shift flow, LocalCluster", flow_seconds))
    print(f"ratio flow / bare (frames/s): {bare_seconds / flow_seconds:.2f}")
    half = n // 2
    print(
        f"peak RSS flow process: {memory.flow_peak_mib:.0f} MiB ({half_memory.flow_peak_mib:.0f} MiB at {half} frames)"
    )
    print(
        f"peak RSS of a worker: {memory.worker_peak_mib:.0f} MiB ({half_memory.worker_peak_mib:.0f} at {half} frames)"
    )
    print(f"(half shift: {half} frames in {half_seconds:.1f} s)")


if __name__ == "__main__":
    main()
