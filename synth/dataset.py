"""Training data derived from synthetic frames: MVTec-AD style crops and a segmentation set.

The detector is trained on component crops, made with exactly the crop rule the scoring
pipeline applies after segmentation (``models.cropping.crop_box``), so training and scoring see
the same framing. The segmenter is trained on whole frames, downscaled, with 0/1 masks; about
20 % of them show defective parts because a real line's frames do too (a missing chunk is not
component, and the segmenter must not "fill it in").

Each split draws its frames from its own seed stream ``(seed, split, index)``, so train and test
never share a frame and growing one split does not change the others.

Layout of ``out``::

    mvtec/train/good/000.png ...
    mvtec/test/good/000.png ...
    mvtec/test/<defect_type>/000.png ...
    mvtec/ground_truth/<defect_type>/000_mask.png     0/255, same size as the crop
    segmentation/images/seg_00000.png                 RGB, long side = seg_long_side
    segmentation/masks/seg_00000.png                  uint8 0 = background, 1 = component
    README.txt
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from models.cropping import crop_box
from synth.defects import DEFECT_TYPES
from synth.frame import Frame, Line, check_seed, check_size, render_frame
from synth.io import clear_generated, write_mask, write_rgb
from synth.shift import plan_defects

# Seed-stream ids of the splits (the second element of every frame key).
STREAM_TRAIN_GOOD = 1
STREAM_TEST_GOOD = 2
STREAM_SEGMENTATION = 3
STREAM_TEST_DEFECT = 10  # + index of the defect type in DEFECT_TYPES

SEG_DEFECT_RATE = 0.2


@dataclass
class DatasetSummary:
    """What ``generate_dataset`` wrote.

    Attributes:
        out: the output folder.
        mvtec_dir: root of the MVTec-AD style crops.
        segmentation_dir: root of the segmentation set (``images/``, ``masks/``).
        readme: path of ``README.txt``.
        train_good: number of good training crops.
        test_good: number of good test crops.
        test_defect: defective test crops per defect type.
        seg_images: number of segmentation frames.
        seg_defective: how many of those show a defective part.
        size: (height, width) of the synthetic frames the data was cut from.
        seg_size: (height, width) of the segmentation images.
        seed: the seed used.
    """

    out: Path
    mvtec_dir: Path
    segmentation_dir: Path
    readme: Path
    train_good: int
    test_good: int
    test_defect: dict[str, int] = field(default_factory=dict)
    seg_images: int = 0
    seg_defective: int = 0
    size: tuple[int, int] = (768, 1024)
    seg_size: tuple[int, int] = (384, 512)
    seed: int = 0


def crop_frame(frame: Frame) -> tuple[np.ndarray, np.ndarray]:
    """Cut the training crop out of a frame: (RGB crop, bool defect mask of the same size).

    Uses ``frame.crop_region``: the intact part for ``missing`` defects (so the missing area lies
    inside the crop), the actual component region otherwise.
    """
    box = crop_box(frame.crop_region)
    if box is None:
        raise RuntimeError("internal error: frame without a component region")
    y0, x0, y1, x1 = box
    return frame.image[y0:y1, x0:x1], frame.defect[y0:y1, x0:x1]


def _count(name: str, value: int, minimum: int) -> int:
    if isinstance(value, bool) or int(value) != value or value < minimum:
        raise ValueError(f"{name} must be a whole number >= {minimum} (got {value!r})")
    return int(value)


def _seg_size(size: tuple[int, int], long_side: int) -> tuple[int, int]:
    """Segmentation image size: downscaled to ``long_side``, never upscaled."""
    h, w = size
    if long_side < 32:
        raise ValueError(f"seg_long_side must be >= 32 px (got {long_side}); e.g. 512")
    if long_side >= max(h, w):
        return h, w
    f = long_side / max(h, w)
    return max(1, round(h * f)), max(1, round(w * f))


def generate_dataset(
    out: Path,
    train_good: int = 200,
    test_good: int = 40,
    test_defect_per_type: int = 12,
    seg_images: int = 80,
    size: tuple[int, int] = (768, 1024),
    seg_long_side: int = 512,
    seed: int = 0,
    progress: Callable[[int], None] | None = None,
    product: int | None = None,
    belt: int | None = None,
) -> DatasetSummary:
    """Write the detector's MVTec-style crops and the segmenter's frame/mask pairs.

    Args:
        out: output folder (created; PNGs from a previous run in our sub-folders are replaced).
        train_good: good training crops (>= 1).
        test_good: good test crops (>= 0).
        test_defect_per_type: defective test crops per defect kind (>= 0).
        seg_images: segmentation frames (>= 0); ``round(0.2 * seg_images)`` show defects.
        size: (height, width) of the synthetic frames; both >= 128.
        seg_long_side: long side of the segmentation images (>= 32); frames are downscaled to
            it, or kept at native size if they are already smaller.
        seed: random seed; same seed, same bytes.
        progress: called with the number of frames done so far (all splits together).
        product: None for a new part in every frame; an integer for one product throughout (see
            :func:`synth.frame.render_frame`).
        belt: None for a new belt in every frame; an integer for one belt throughout.

    Returns:
        A summary of what was written.
    """
    counts = _check_counts(train_good, test_good, test_defect_per_type, seg_images)
    train_good, test_good, test_defect_per_type, seg_images = counts
    size = check_size(size)
    seed = check_seed(seed)
    seg_size = _seg_size(size, int(seg_long_side))
    out = Path(out)
    mvtec, seg_dir = _prepare_dirs(out)
    tick = _Ticker(progress)
    line = Line(product, belt)
    _write_good_crops(mvtec / "train" / "good", train_good, size, (seed, STREAM_TRAIN_GOOD), line, tick)
    _write_good_crops(mvtec / "test" / "good", test_good, size, (seed, STREAM_TEST_GOOD), line, tick)
    _write_defect_crops(mvtec, test_defect_per_type, size, seed, line, tick)
    n_seg_def = _write_segmentation(seg_dir, seg_images, size, seg_size, seed, line, tick)
    readme = out / "README.txt"
    readme.write_text(_readme_text(seed, size, seg_size, counts, n_seg_def))
    return DatasetSummary(
        out=out,
        mvtec_dir=mvtec,
        segmentation_dir=seg_dir,
        readme=readme,
        train_good=train_good,
        test_good=test_good,
        test_defect=dict.fromkeys(DEFECT_TYPES, test_defect_per_type),
        seg_images=seg_images,
        seg_defective=n_seg_def,
        size=size,
        seg_size=seg_size,
        seed=seed,
    )


class _Ticker:
    """Counts finished frames across all splits and reports each count to ``progress``."""

    def __init__(self, progress: Callable[[int], None] | None) -> None:
        self.done = 0
        self.progress = progress

    def __call__(self) -> None:
        self.done += 1
        if self.progress is not None:
            self.progress(self.done)


def _check_counts(
    train_good: int, test_good: int, test_defect_per_type: int, seg_images: int
) -> tuple[int, int, int, int]:
    """Validate the split sizes before anything is written, so a bad count leaves no half-made folder."""
    return (
        _count("train_good", train_good, 1),
        _count("test_good", test_good, 0),
        _count("test_defect_per_type", test_defect_per_type, 0),
        _count("seg_images", seg_images, 0),
    )


def _stem(i: int, n: int) -> str:
    """File stem for item ``i`` of ``n``: zero-padded to at least 3 digits, so names sort in order."""
    return f"{i:0{max(3, len(str(n - 1)))}d}"


def _prepare_dirs(out: Path) -> tuple[Path, Path]:
    """Create every output folder and clear PNGs a previous run left there.

    Returns:
        (MVTec root, segmentation root).
    """
    mvtec = out / "mvtec"
    seg_dir = out / "segmentation"
    dirs = [mvtec / "train" / "good", mvtec / "test" / "good"]
    dirs += [mvtec / "test" / k for k in DEFECT_TYPES] + [mvtec / "ground_truth" / k for k in DEFECT_TYPES]
    dirs += [seg_dir / "images", seg_dir / "masks"]
    for d in dirs:
        d.mkdir(parents=True, exist_ok=True)
        clear_generated(d, ["*.png"])
    return mvtec, seg_dir


def _write_good_crops(
    folder: Path,
    count: int,
    size: tuple[int, int],
    stream: tuple[int, int],
    line: Line,
    tick: Callable[[], None],
) -> None:
    """Write ``count`` crops of good parts, frame ``i`` rendered from key ``(*stream, i)``."""
    for i in range(count):
        crop, _ = crop_frame(render_frame(size, (*stream, i), None, *line))
        write_rgb(folder / f"{_stem(i, count)}.png", crop)
        tick()


def _write_defect_crops(
    mvtec: Path,
    per_type: int,
    size: tuple[int, int],
    seed: int,
    line: Line,
    tick: Callable[[], None],
) -> None:
    """Write ``per_type`` defective test crops and their ground-truth masks for every defect kind."""
    for t, kind in enumerate(DEFECT_TYPES):
        for i in range(per_type):
            crop, mask = crop_frame(render_frame(size, (seed, STREAM_TEST_DEFECT + t, i), kind, *line))
            name = _stem(i, per_type)
            write_rgb(mvtec / "test" / kind / f"{name}.png", crop)
            write_mask(mvtec / "ground_truth" / kind / f"{name}_mask.png", mask)
            tick()


def _write_segmentation(
    seg_dir: Path,
    count: int,
    size: tuple[int, int],
    seg_size: tuple[int, int],
    seed: int,
    line: Line,
    tick: Callable[[], None],
) -> int:
    """Write whole frames and 0/1 component masks, downscaled to ``seg_size``.

    Returns:
        How many of the frames show a defective part.
    """
    seg_h, seg_w = seg_size
    seg_plan = plan_defects(count, SEG_DEFECT_RATE, seed, stream=STREAM_SEGMENTATION) if count else []
    for i, kind in enumerate(seg_plan):
        frame = render_frame(size, (seed, STREAM_SEGMENTATION, i), kind, *line)
        name = f"seg_{i:05d}.png"
        image, region = frame.image, frame.region
        if (seg_h, seg_w) != size:
            image = np.asarray(Image.fromarray(image).resize((seg_w, seg_h), Image.Resampling.BOX))
            small = Image.fromarray(region.astype(np.uint8)).resize((seg_w, seg_h), Image.Resampling.NEAREST)
            region = np.asarray(small) > 0
        write_rgb(seg_dir / "images" / name, image)
        write_mask(seg_dir / "masks" / name, region, value=1)
        tick()
    return sum(k is not None for k in seg_plan)


def _readme_text(
    seed: int, size: tuple[int, int], seg_size: tuple[int, int], counts: tuple[int, int, int, int], n_seg_def: int
) -> str:
    """README contents describing the layout, counts and crop rule, for whoever opens the folder.

    Args:
        counts: (train_good, test_good, test_defect_per_type, seg_images).
    """
    train_good, test_good, test_defect_per_type, seg_images = counts
    seg_h, seg_w = seg_size
    return (
        "Synthetic defectflow training data (generated by synth.dataset.generate_dataset, "
        f"seed={seed}, frames {size[0]}x{size[1]} HxW). mvtec/ holds component crops in the MVTec AD "
        f"layout: train/good ({train_good} crops), test/good ({test_good}), test/<type> and "
        f"ground_truth/<type>/<stem>_mask.png (0/255) with {test_defect_per_type} crops for each of "
        f"{', '.join(DEFECT_TYPES)}; crops use models.cropping.crop_box on the component mask "
        "(bounding box + max(16, round(0.08 * longer side)) px per side, clipped; the intact part "
        "for 'missing') at native resolution. segmentation/ holds "
        f"{seg_images} whole frames at {seg_h}x{seg_w} (images/, RGB, BOX-downscaled) with masks/ "
        f"(uint8, 0 background, 1 component, nearest-neighbour); defective parts in {n_seg_def} of them. "
        "Every split uses its own seed stream, so no frame is shared between splits.\n"
    )
