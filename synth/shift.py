"""A synthetic production shift: full-size camera frames with labels and ground-truth masks.

This is what the inspection pipeline consumes in tests and in the demo: a folder of frames as
the line camera would deliver them, plus the answers (which frames are defective, where the
defect and the component are) so results can be scored.

Layout of ``out``::

    frames/frame_00000.png ...        RGB uint8, H x W
    labels.csv                        file,label,defect_type
    masks/defects/frame_00000.png     0/255 defect pixels (all 0 for good frames)
    masks/regions/frame_00000.png     0/255 component region after the defect
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from synth.defects import DEFECT_TYPES
from synth.frame import Frame, Line, check_seed, check_size, render_frame
from synth.io import BackgroundWriter, clear_generated, write_mask, write_rgb


@dataclass
class ShiftSummary:
    """What ``generate_shift`` wrote.

    Attributes:
        out: the output folder.
        frames_dir: folder with the frame PNGs.
        labels_csv: path of ``labels.csv``.
        defect_masks_dir: folder with per-frame defect masks.
        region_masks_dir: folder with per-frame component-region masks.
        images: number of frames.
        defects: number of defective frames.
        by_type: defective frames per defect type.
        size: (height, width) of the frames.
        seed: the seed used.
    """

    out: Path
    frames_dir: Path
    labels_csv: Path
    defect_masks_dir: Path
    region_masks_dir: Path
    images: int
    defects: int
    by_type: dict[str, int] = field(default_factory=dict)
    size: tuple[int, int] = (1536, 2048)
    seed: int = 0

    @property
    def good(self) -> int:
        """Number of good frames."""
        return self.images - self.defects


def plan_defects(images: int, defect_rate: float, seed: int, stream: int = 0) -> list[str | None]:
    """Which frame gets which defect: exactly ``round(images * defect_rate)`` defective frames.

    Positions are a seeded random subset; types go through all kinds in a shuffled order and
    repeat, so every kind appears once there are at least five defective frames.

    Args:
        images: number of frames.
        defect_rate: fraction of defective frames in [0, 1].
        seed: plan seed.
        stream: separates independent plans drawn from the same seed (e.g. the dataset's
            segmentation split).

    Returns:
        list of length ``images``: None for good frames, else a defect type.
    """
    rng = np.random.default_rng([seed, 0x5EED, stream])
    n_def = round(images * defect_rate)
    plan: list[str | None] = [None] * images
    positions = np.sort(rng.choice(images, size=n_def, replace=False)) if n_def else []
    kinds: list[str] = []
    while len(kinds) < n_def:
        kinds.extend(DEFECT_TYPES[int(i)] for i in rng.permutation(len(DEFECT_TYPES)))
    for pos, kind in zip(positions, kinds[:n_def], strict=True):
        plan[int(pos)] = kind
    return plan


def _write_frame(frame_path: Path, defect_path: Path, region_path: Path, frame: Frame) -> None:
    write_rgb(frame_path, frame.image)
    write_mask(defect_path, frame.defect)
    write_mask(region_path, frame.region)


def generate_shift(
    out: Path,
    images: int = 20,
    size: tuple[int, int] = (1536, 2048),
    defect_rate: float = 0.2,
    seed: int = 0,
    progress: Callable[[int], None] | None = None,
    product: int | None = None,
    belt: int | None = None,
) -> ShiftSummary:
    """Write a shift of synthetic camera frames with labels and masks.

    Frame ``i`` is rendered from ``(seed, i)`` only (and its planned defect), so asking for more
    frames does not change the earlier ones, and the same arguments give byte-identical files.

    Args:
        out: output folder (created; our own files from a previous run are replaced).
        images: number of frames (>= 1).
        size: (height, width) of each frame; both >= 128.
        defect_rate: fraction of defective frames in [0, 1].
        seed: random seed.
        progress: called with the number of frames done so far, after each frame (the PNG
            writes run one or two frames behind on a helper thread; all files are on disk when
            this function returns).
        product: None for a new part in every frame; an integer for one product throughout (see
            :func:`synth.frame.render_frame`).
        belt: None for a new belt in every frame; an integer for one belt throughout.

    Returns:
        A summary of what was written.
    """
    images = _check_images(images, defect_rate)
    size = check_size(size)
    seed = check_seed(seed)
    out = Path(out)
    frames_dir, dmask_dir, rmask_dir = _prepare_dirs(out)
    plan = plan_defects(images, defect_rate, seed)
    with BackgroundWriter() as writer:
        rows = _render_plan(plan, size, seed, Line(product, belt), (frames_dir, dmask_dir, rmask_dir), writer, progress)
    by_type = dict.fromkeys(DEFECT_TYPES, 0)
    for kind in plan:
        if kind is not None:
            by_type[kind] += 1
    labels = out / "labels.csv"
    _write_labels(labels, rows)
    return ShiftSummary(
        out=out,
        frames_dir=frames_dir,
        labels_csv=labels,
        defect_masks_dir=dmask_dir,
        region_masks_dir=rmask_dir,
        images=images,
        defects=sum(by_type.values()),
        by_type=by_type,
        size=size,
        seed=seed,
    )


def _check_images(images: int, defect_rate: float) -> int:
    """Validate the frame count and defect rate before any folder is touched; returns the count as int."""
    if int(images) != images or images < 1:
        raise ValueError(f"images must be a whole number >= 1 (got {images}); ask for at least one frame")
    if not 0.0 <= defect_rate <= 1.0:
        raise ValueError(f"defect_rate must be within [0, 1] (got {defect_rate}); e.g. 0.2 for 20 % defective")
    return int(images)


def _prepare_dirs(out: Path) -> tuple[Path, Path, Path]:
    """Create the frame and mask folders and clear frames a previous run left there.

    Returns:
        (frames, defect masks, region masks) folders.
    """
    frames_dir = out / "frames"
    dmask_dir = out / "masks" / "defects"
    rmask_dir = out / "masks" / "regions"
    for d in (frames_dir, dmask_dir, rmask_dir):
        d.mkdir(parents=True, exist_ok=True)
        clear_generated(d, ["frame_*.png"])
    return frames_dir, dmask_dir, rmask_dir


def _render_plan(
    plan: list[str | None],
    size: tuple[int, int],
    seed: int,
    line: Line,
    dirs: tuple[Path, Path, Path],
    writer: BackgroundWriter,
    progress: Callable[[int], None] | None,
) -> list[tuple[str, str, str]]:
    """Render each planned frame and hand its PNGs to the background writer.

    Rendering stays on this thread while PNG encoding overlaps with the next frame.

    Returns:
        labels.csv rows ``(file, label, defect_type)``.
    """
    frames_dir, dmask_dir, rmask_dir = dirs
    rows: list[tuple[str, str, str]] = []
    for i, kind in enumerate(plan):
        frame = render_frame(size, (seed, i), kind, *line)
        name = f"frame_{i:05d}.png"
        writer.submit(_write_frame, frames_dir / name, dmask_dir / name, rmask_dir / name, frame)
        rows.append((name, "good" if kind is None else "defect", kind or ""))
        if progress is not None:
            progress(i + 1)
    return rows


def _write_labels(path: Path, rows: list[tuple[str, str, str]]) -> None:
    """Write labels.csv with a header and Unix line endings."""
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(["file", "label", "defect_type"])
        writer.writerows(rows)
