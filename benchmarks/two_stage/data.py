"""The benchmark's synthetic data: the labelled test shift, the crop and segmentation sets, the whole-frame set."""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from benchmarks.two_stage.options import say


def downscale_long_side(image: np.ndarray, long_side: int) -> np.ndarray:
    """Box-downscale so the longer side is ``long_side``; never upscales."""
    h, w = image.shape[:2]
    if max(h, w) <= long_side:
        return image
    f = long_side / max(h, w)
    size = (max(1, round(w * f)), max(1, round(h * f)))
    return np.asarray(Image.fromarray(image).resize(size, Image.Resampling.BOX))


def generate_data(args: argparse.Namespace, data: Path) -> dict[str, Any]:
    """Test shift, crop and segmentation sets, and the whole-frame MVTec set; returns their paths and counts."""
    from synth.dataset import generate_dataset
    from synth.shift import generate_shift

    line = {"product": args.product, "belt": args.belt}
    shift = generate_shift(
        data / "shift", images=args.frames, size=args.size, defect_rate=args.defect_rate, seed=args.seed, **line
    )
    say(f"test shift: {shift.images} frames {args.size[0]}x{args.size[1]}, {shift.defects} defective {shift.by_type}")
    crops = generate_dataset(
        data / "crops",
        train_good=args.train_good,
        test_good=args.test_good,
        test_defect_per_type=args.test_defect,
        seg_images=args.seg_images,
        size=args.size,
        seed=args.seed + 1,
        **line,
    )
    say(f"crop set: {crops.train_good} good training crops; segmentation set: {crops.seg_images} frames")

    long_side = max(512, args.image_size)
    source = generate_shift(
        data / "fullframe-source", images=args.train_good, size=args.size, defect_rate=0.0, seed=args.seed + 2, **line
    )
    good_dir = data / "fullframe" / "train" / "good"
    good_dir.mkdir(parents=True)
    for path in sorted(source.frames_dir.glob("frame_*.png")):
        with Image.open(path) as image:
            pixels = np.asarray(image.convert("RGB"))
        Image.fromarray(downscale_long_side(pixels, long_side)).save(good_dir / path.name)
    shutil.rmtree(source.out)  # only the downscaled copies are needed
    say(f"whole-frame set: {args.train_good} good frames, downscaled to long side {long_side}")
    return {
        "shift_dir": shift.out,
        "frames_dir": shift.frames_dir,
        "labels_csv": shift.labels_csv,
        "defect_masks_dir": shift.defect_masks_dir,
        "defects": shift.defects,
        "defects_by_type": shift.by_type,
        "mvtec_crops": crops.mvtec_dir,
        "segmentation": crops.segmentation_dir,
        "mvtec_fullframe": data / "fullframe",
        "fullframe_long_side": long_side,
    }
