"""Measure how fast frames are generated: ``python -m synth.benchmark [--frames N] [--size H W]``.

Prints the median render time per frame (in memory), the median PNG write time (frame + two
masks), and the wall time of ``generate_shift`` (which overlaps writing with rendering on a
helper thread). Set ``OPENBLAS_NUM_THREADS=1`` to measure a single core.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from synth.defects import DEFECT_TYPES
from synth.frame import render_frame
from synth.io import write_mask, write_rgb
from synth.shift import generate_shift


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark and print the figures."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=10)
    ap.add_argument("--size", type=int, nargs=2, default=(1536, 2048), metavar=("H", "W"))
    args = ap.parse_args(argv)
    size = (args.size[0], args.size[1])
    kinds = [None, *DEFECT_TYPES]
    render_frame(size, (999, 0))  # warm-up: font cache, interpolation matrices
    render_s, write_s = [], []
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        for i in range(args.frames):
            t0 = time.perf_counter()
            f = render_frame(size, (0, i), kinds[i % len(kinds)])
            t1 = time.perf_counter()
            write_rgb(d / "f.png", f.image)
            write_mask(d / "d.png", f.defect)
            write_mask(d / "r.png", f.region)
            t2 = time.perf_counter()
            render_s.append(t1 - t0)
            write_s.append(t2 - t1)
        frame_mb = (d / "f.png").stat().st_size / 1e6
        t = time.perf_counter()
        generate_shift(d / "shift", images=args.frames, size=size, seed=0)
        wall = time.perf_counter() - t
    print(f"frame {size[0]}x{size[1]} (HxW), {args.frames} frames")
    print(f"render (in memory): median {statistics.median(render_s) * 1e3:.0f} ms/frame")
    write_ms = statistics.median(write_s) * 1e3
    print(f"write PNGs (frame + 2 masks): median {write_ms:.0f} ms/frame, {frame_mb:.1f} MB/frame")
    print(f"generate_shift: {wall:.2f} s = {args.frames / wall:.2f} frames/s")


if __name__ == "__main__":
    main()
