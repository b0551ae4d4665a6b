"""Which teacher levels, and how fused: one trained detector evaluated with each fusion of its level maps.

The paper fuses the three per-level maps with a fitted 1x1 convolution (defectflow fits it on synthetic
anomalies, :mod:`models.detector.map_weights_fit`); RD4AD sums them. This script takes a trained package and evaluates
it on an MVTec-layout set with the fitted weights, the plain mean, each level alone and each pair, so the tuning
table in docs/detector.md shows what the fusion and each level give. No training: every row is the same network.

    .venv/bin/python -m benchmarks.detector_levels PACKAGE_DIR DATA [--out results.json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from models.detector.evaluation import headline_metrics, load_test_set
from models.detector.package import load_detector

FUSIONS: dict[str, list[float] | None] = {
    "fitted (package)": None,
    "mean of 3": [1 / 3, 1 / 3, 1 / 3],
    "level 1 (stride 4)": [1.0, 0.0, 0.0],
    "level 2 (stride 8)": [0.0, 1.0, 0.0],
    "level 3 (stride 16)": [0.0, 0.0, 1.0],
    "levels 1+2": [0.5, 0.5, 0.0],
    "levels 2+3": [0.0, 0.5, 0.5],
}


@torch.inference_mode()
def level_maps(model, images: torch.Tensor, batch_size: int = 16) -> torch.Tensor:
    """Smoothed per-level maps ``(N, 3, S, S)`` of the whole set (fusion is linear: computed once, mixed after)."""
    model.eval()
    return torch.cat([model.level_maps(images[i : i + batch_size]) for i in range(0, len(images), batch_size)])


def per_defect(test, maps) -> dict[str, dict[str, float]]:
    """Headline metrics of each defect type against the good images."""
    scores = maps.reshape(len(maps), -1).max(axis=1)
    good = test.defects == "good"
    out = {}
    for defect in sorted(set(test.defects) - {"good"}):
        chosen = good | (test.defects == defect)
        out[defect] = headline_metrics(test.labels[chosen], scores[chosen], test.masks[chosen], maps[chosen])
    return out


def main(argv: list[str] | None = None) -> int:
    """Print one row per fusion: image AUROC, pixel AUROC, AUPRO."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("package", type=Path, help="trained detector package directory")
    parser.add_argument("data", type=Path, help="MVTec-layout folder with test/ and ground_truth/")
    parser.add_argument("--out", type=Path, default=None, help="write the rows as JSON here")
    parser.add_argument("--per-defect", default=None, metavar="FUSION", help="also per defect type for this row")
    args = parser.parse_args(argv)
    model, _, _ = load_detector(args.package)
    test = load_test_set(args.data, model.config.image_size)
    levels = level_maps(model, test.images)
    fitted = model.anomaly_map_generator.fusion_weights
    rows = []
    print(f"{'fusion':22s} {'weights':24s} image_auroc pixel_auroc  aupro")
    for name, weights in FUSIONS.items():
        used = fitted if weights is None else weights
        maps = torch.einsum("nlhw,l->nhw", levels, torch.tensor(used, dtype=levels.dtype)).numpy()
        metrics = headline_metrics(test.labels, maps.reshape(len(maps), -1).max(axis=1), test.masks, maps)
        row = {"fusion": name, "weights": [round(w, 3) for w in used], **metrics}
        if name == args.per_defect:
            row["per_defect"] = per_defect(test, maps)
        rows.append(row)
        print(
            f"{name:22s} {row['weights']!s:24s} {row['image_auroc']:11.4f} {row['pixel_auroc']:11.4f} "
            f"{row['aupro']:6.4f}",
            flush=True,
        )
        for defect, values in row.get("per_defect", {}).items():
            print(
                f"  {defect:20s} {'':24s} {values['image_auroc']:11.4f} {values['pixel_auroc']:11.4f} "
                f"{values['aupro']:6.4f}"
            )
    if args.out:
        args.out.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
