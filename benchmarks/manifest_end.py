"""The ingest's last step alone: combine the manifest's parts and write the manifest, RSS added per shift size.

    .venv/bin/python -m benchmarks.manifest_end                # 1,000, 10,000 and 100,000 rows
    .venv/bin/python -m benchmarks.manifest_end --rows 500 5000

Each size runs in a fresh process (Arrow's and Parquet's buffers start empty) on made-up rows of the manifest's
shape (a 64-character digest, names, sizes, a timestamp), written in parts a 16-frame batch at a time, as
``flows/ingest.py`` does; printed: the RSS that combining them (:func:`storage.manifest_parts.combine_parts`) and
writing the manifest (:func:`storage.tables.write_manifest`) add, the step the ingest runs on a worker
(``tasks/write_manifest.py``; README, "Scale").
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path


def measure(rows: int) -> str:
    """Combine and write ``rows`` rows in this process; one line with the RSS each step added."""
    import psutil

    from storage.manifest_parts import ManifestParts, combine_parts
    from storage.tables import read_manifest, write_manifest

    process = psutil.Process()

    def rss() -> float:
        return process.memory_info().rss / 2**20

    folder = Path(tempfile.mkdtemp(prefix="manifest-end-"))
    parts = ManifestParts(folder)
    for start in range(0, rows, 16):
        parts.add([_row(i) for i in range(start, min(rows, start + 16))])
    before = rss()
    parts.flush()
    manifest = combine_parts(folder, read_manifest(folder))
    combined = rss()
    write_manifest(folder, manifest)
    written = rss()
    parts.remove()
    return (
        f"{rows:>8} rows: combine +{combined - before:.0f} MiB, write +{written - combined:.0f} MiB, "
        f"end step +{written - before:.0f} MiB"
    )


def _row(index: int) -> dict[str, object]:
    name = f"line-3/frame_{index:07d}.png"
    return {
        "image_id": name.replace("/", "--"),
        "source_path": name,
        "sha256": f"{index:064x}",
        "height": 384,
        "width": 512,
        "channels": 3,
        "dtype": "uint8",
        "status": "ingested",
        "reason": "",
        "bytes": 590_321,
        "ingested_at": "2026-12-01T22:28:08+00:00",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000, 10_000, 100_000])
    parser.add_argument("--measure", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(measure(args.measure), flush=True)
        return
    for rows in args.rows:
        command = [sys.executable, "-m", "benchmarks.manifest_end", "--measure", str(rows)]
        subprocess.run(command, check=True)


if __name__ == "__main__":
    main()
