"""Scale: ingest and score a shift of 1,000 and of 10,000 frames; time should grow linearly, memory stay flat.

    .venv/bin/python -m benchmarks.scale                      # 1,000 and 10,000 frames of 512x384
    .venv/bin/python -m benchmarks.scale --frames 40 400      # a quick check
    .venv/bin/python -m benchmarks.scale --frames 300 3000 --size 96 128   # what grows per frame, frames cheap

For each shift size, ``ingest_shift`` and then ``nightly_scoring`` run through the real flows on a fresh
``LocalCluster`` with the defaults a user gets (workers, batch sizes), each in a process of its own, so that one
phase's allocations do not show up in the other's peak. Printed per phase and size: wall time, frames/s, the
flow process's RSS before the flow starts (imports, Prefect client) and its peak during the flow, and the peak
RSS of a worker (sampled over the process's children; the temporary Prefect server is left out). The ratios
10k/1k of seconds per frame (linear: about 1) and of peak RSS (flat: within 10 %) close the table, with the load
average, because this machine is shared and the times depend on it.

The frames (cached under ``--data``, default under /tmp) are a few hundred distinct synthetic frames, each
written in variants whose first pixels carry the variant's number, so that every file has pixels of its own
(the ingest would mark copies ``duplicate``). They are stored as uncompressed PNG: a few ms a frame, where zlib
would take most of an hour for 10,000 frames on two cores. The models are the small ones of the pipeline tests
(``tests/pipeline.py``: random teacher, seconds of training), trained and promoted once into ``--data``'s
workspace.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

import numpy as np

DEFAULT_DATA = Path(tempfile.gettempdir()) / "defectflow-scale"
SIZE = (384, 512)  # height, width
DISTINCT = 200  # frames rendered by synth; the others are variants of these


def _frame_name(index: int) -> str:
    return f"frame_{index:06d}.png"


def png_stored(pixels: np.ndarray) -> bytes:
    """An RGB uint8 frame as a PNG without compression (no filter, stored deflate blocks): a few ms a frame."""
    height, width, _ = pixels.shape
    rows = np.empty((height, 1 + width * 3), dtype=np.uint8)
    rows[:, 0] = 0  # filter type None
    rows[:, 1:] = pixels.reshape(height, width * 3)

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(rows.tobytes(), 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def _suffix(size: tuple[int, int]) -> str:
    """What names the frames, shifts and pool of another size than ``SIZE`` (none for ``SIZE``: the cache stays)."""
    return "" if tuple(size) == SIZE else f"-{size[1]}x{size[0]}"


def write_frames(
    frames_dir: Path, count: int, distinct: int = DISTINCT, seed: int = 11, size: tuple[int, int] = SIZE
) -> None:
    """``count`` frames of ``size`` in ``frames_dir`` (kept: only missing files are written).

    Frame ``i`` is rendered frame ``i % distinct`` whose first row starts with the variant ``i // distinct`` as
    three 8-bit pixels: every file holds other pixels.
    """
    from synth.frame import render_frame

    frames_dir.mkdir(parents=True, exist_ok=True)
    missing = [i for i in range(count) if not (frames_dir / _frame_name(i)).is_file()]
    if not missing:
        return
    bases: dict[int, np.ndarray] = {}
    rng = np.random.default_rng(seed)
    kinds = [None if rng.random() > 0.1 else "scratch" for _ in range(distinct)]
    start = time.perf_counter()
    for index in missing:
        base, variant = index % distinct, index // distinct
        if base not in bases:
            rendered = render_frame(tuple(max(side, 128) for side in size), (seed, base), kinds[base]).image
            bases[base] = rendered[: size[0], : size[1]]  # synth draws 128 px at least; smaller frames are cut
        pixels = bases[base].copy()
        pixels[0, :3, :] = np.frombuffer(variant.to_bytes(9, "little"), dtype=np.uint8).reshape(3, 3)
        (frames_dir / _frame_name(index)).write_bytes(png_stored(pixels))
    print(f"  wrote {len(missing)} frames in {time.perf_counter() - start:.0f} s", flush=True)


def shift_source(data: Path, frames: int, size: tuple[int, int] = SIZE) -> Path:
    """A folder with the first ``frames`` frames of ``size`` (links into the frame pool)."""
    pool = data / f"pool{_suffix(size)}"
    write_frames(pool, frames, size=size)
    source = data / f"shift-{frames}{_suffix(size)}"
    if source.is_dir() and len(list(source.iterdir())) == frames:
        return source
    shutil.rmtree(source, ignore_errors=True)
    source.mkdir(parents=True)
    for index in range(frames):
        (source / _frame_name(index)).symlink_to(pool / _frame_name(index))
    return source


def prepare_models(home: Path, data: Path) -> None:
    """Small segmenter and detector trained and promoted as the pipeline tests do, once per ``data`` folder."""
    if (home / "models-ready").is_file():
        return
    from flows.promotion import promote
    from flows.runtime import prefect_api
    from synth.dataset import generate_dataset
    from tests.pipeline import train_small_models

    print("training the small test models (once) ...", flush=True)
    os.environ["DEFECTFLOW_FLOOR_IMAGE_AUROC"] = "0"
    os.environ["DEFECTFLOW_FLOOR_MIOU"] = "0"
    training = data / "training"
    shutil.rmtree(training, ignore_errors=True)
    generate_dataset(training, train_good=24, test_good=6, test_defect_per_type=2, seg_images=16, size=(192, 256))
    with prefect_api():
        train_small_models(home, training)
        promote(model="segmenter", home=str(home), eval_data=str(training / "segmentation"))
        promote(model="detector", home=str(home), eval_data=str(training / "mvtec"))
    (home / "models-ready").write_text("promoted\n")


def measure(phase: str, frames: int, data: Path, size: tuple[int, int] = SIZE) -> dict[str, float]:
    """One phase on one shift size, in this process: seconds, frames/s and memory (MiB)."""
    import psutil

    from benchmarks.memory import PeakMemory
    from flows.runtime import dask_task_runner, prefect_api
    from storage.settings import load_settings

    # only the phase's own flow module: scoring imports torch (0.7 GB), which an ingest process never loads
    if phase == "ingest":
        from flows.ingest import ingest_shift
    else:
        from flows.scoring import nightly_scoring

    home = data / "home"
    shift = f"scale-{frames}{_suffix(size)}"
    settings = load_settings(home)
    if phase == "ingest":  # a fresh shift: ingest everything, then score everything
        shutil.rmtree(settings.results_dir(shift), ignore_errors=True)
        shutil.rmtree(settings.store_path / "shifts" / shift, ignore_errors=True)
    source = shift_source(data, frames, size)
    with prefect_api():
        runner = dask_task_runner(settings)
        before = psutil.Process().memory_info().rss / 2**20
        with PeakMemory() as memory:
            start = time.perf_counter()
            if phase == "ingest":
                summary = ingest_shift.with_options(task_runner=runner)(
                    source=str(source), shift_id=shift, home=str(home)
                )
                done = summary.ingested
            else:
                summary = nightly_scoring.with_options(task_runner=runner)(shift_id=shift, home=str(home), rescore=True)
                done = summary.scored + summary.no_component
            seconds = time.perf_counter() - start
    return {
        "frames": frames,
        "done": done,
        "seconds": seconds,
        "rss_before": before,
        "flow_peak": memory.flow_peak_mib,
        "worker_peak": memory.worker_peak_mib,
        "load": os.getloadavg()[0],
    }


def run_phase(phase: str, frames: int, data: Path, size: tuple[int, int] = SIZE) -> dict[str, float]:
    """:func:`measure` in a fresh Python process (its own Prefect server and cluster)."""
    command = [sys.executable, "-m", "benchmarks.scale", "--measure", phase, str(frames), "--data", str(data)]
    command += ["--size", *map(str, size)]
    result = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=False)
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    if result.returncode != 0 or not lines:
        raise SystemExit(f"{phase} of {frames} frames failed (exit {result.returncode}); see its output above")
    return json.loads(lines[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, nargs=2, default=(1000, 10000), metavar=("SMALL", "LARGE"))
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="frames, models and workspace (kept)")
    parser.add_argument(
        "--size", type=int, nargs=2, default=SIZE, metavar=("HEIGHT", "WIDTH"), help="frame size (default 384 512)"
    )
    parser.add_argument("--measure", nargs=2, metavar=("PHASE", "FRAMES"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    data = args.data.resolve()
    if args.measure:
        phase, frames = args.measure
        print(json.dumps(measure(phase, int(frames), data, tuple(args.size))), flush=True)
        return

    small, large = sorted(args.frames)
    size = (args.size[0], args.size[1])
    print(f"frames of {size[1]}x{size[0]} in {data}; load average {os.getloadavg()[0]:.1f} at the start", flush=True)
    shift_source(data, large, size)
    shift_source(data, small, size)
    prepare_models(data / "home", data)
    results: dict[tuple[str, int], dict[str, float]] = {}
    for frames in (small, large):
        for phase in ("ingest", "score"):
            print(f"{phase} {frames} frames ...", flush=True)
            r = results[phase, frames] = run_phase(phase, frames, data, size)
            print(  # as it comes: a run cut short still leaves its figures
                f"  {phase} {frames}: {r['seconds']:.0f} s, flow peak {r['flow_peak']:.0f} MiB, worker peak"
                f" {r['worker_peak']:.0f} MiB, load {r['load']:.1f}",
                flush=True,
            )

    from flows.runtime import local_worker_count
    from storage.settings import load_settings

    workers = local_worker_count(load_settings(data / "home"))
    print(f"\nscale benchmark: {size[1]}x{size[0]} PNG frames, LocalCluster of {workers} workers, default batch sizes")
    header = f"{'phase':<8}{'frames':>8}{'seconds':>10}{'frames/s':>10}{'flow MiB':>10}{'(before)':>10}"
    print(header + f"{'worker MiB':>12}{'load':>6}")
    for (phase, frames), r in sorted(results.items()):
        print(
            f"{phase:<8}{frames:>8}{r['seconds']:>10.1f}{r['done'] / r['seconds']:>10.2f}{r['flow_peak']:>10.0f}"
            f"{r['rss_before']:>10.0f}{r['worker_peak']:>12.0f}{r['load']:>6.1f}"
        )
    print(f"ratios {large}/{small} frames:")
    for phase in ("ingest", "score"):
        a, b = results[phase, small], results[phase, large]
        per_frame = (b["seconds"] / b["frames"]) / (a["seconds"] / a["frames"])
        flow, worker = b["flow_peak"] / a["flow_peak"], b["worker_peak"] / a["worker_peak"]
        print(f"  {phase:<7}seconds per frame {per_frame:.2f}, peak RSS: flow process {flow:.2f}, worker {worker:.2f}")
    print(f"load average (1 min) at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
