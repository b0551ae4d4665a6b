"""Detector data with less normal variation: one product (and optionally one belt) instead of a new part per frame.

``synth.dataset.generate_dataset`` draws a new part (family, proportions, material) and a new belt for every
frame, which makes "normal" much broader than on a real line, where one camera sees one product on one belt. This
script writes the same MVTec-layout set with the part's geometry and material (``--fix product``) or also the
belt (``--fix product-belt``) drawn once from ``--product``; pose, lighting, print marks and defects still vary per
frame. It answers one question for docs/detector.md: is the randomly initialised detector held back by the
variety of the normal parts? Train and evaluate on it with the experiment command::

    .venv/bin/python -m benchmarks.detector_single_product OUT --fix product
    .venv/bin/python -m benchmarks.detector_experiment OUT/mvtec --image-size 256 --minutes 6 --lr 0.001 \\
        --threads 2 --out results/detector-single-product.json
"""

from __future__ import annotations

import argparse
from pathlib import Path

from synth.dataset import generate_dataset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path)
    parser.add_argument("--fix", choices=("product", "product-belt"), default="product")
    parser.add_argument("--product", type=int, default=0, help="which product (seed of its geometry and material)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    summary = generate_dataset(
        args.out,
        train_good=200,
        test_good=40,
        test_defect_per_type=12,
        seg_images=0,
        seed=args.seed,
        product=args.product,
        belt=args.product if args.fix == "product-belt" else None,
    )
    print(summary)


if __name__ == "__main__":
    main()
