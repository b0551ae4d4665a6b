"""The method paper's Table 2 on our data: AMAM dilation rates, and gates on three levels versus four.

Trains one segmenter per configuration with the same recipe, seed, split and time budget, then evaluates each
on the held-out validation frames (mIoU, pixel accuracy, ms per image at batch size 1) and prints a table;
``--out`` also writes it as markdown.

Example (the full run: 5 configurations x 5 min on 2 CPU cores, about 27 min)::

    OMP_WAIT_POLICY=PASSIVE python benchmarks/segmenter_ablation.py --data /tmp/defectflow-synth \\
        --image-size 256 --minutes 5 --out docs/segmenter.md

``--data`` may be a segmentation folder (``images/`` + ``masks/``) or a synth output folder (its
``segmentation/`` is used); when it does not exist, the synthetic set is generated there first. ``--out`` into an
existing file replaces only the section between the ablation markers (docs/segmenter.md has them).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from models.segmentation import SegmentationFolder, SegmenterConfig, evaluate_segmenter, train_segmenter

logger = logging.getLogger("segmenter_ablation")

#: ``--out`` into an existing document replaces the text between these markers (e.g. in docs/segmenter.md).
BEGIN_MARKER = "<!-- segmenter-ablation:begin -->"
END_MARKER = "<!-- segmenter-ablation:end -->"


@dataclass(frozen=True)
class Variant:
    """One row of the ablation table."""

    name: str
    dilation_rates: tuple[int, ...]
    gated_levels: tuple[int, ...]


VARIANTS: tuple[Variant, ...] = (
    Variant("rates 2-4-6-8", (2, 4, 6, 8), (1, 2, 3)),
    Variant("rates 4-8-12-16 (paper)", (4, 8, 12, 16), (1, 2, 3)),
    Variant("rates 6-10-14-18", (6, 10, 14, 18), (1, 2, 3)),
    Variant("rates 8-12-16-20", (8, 12, 16, 20), (1, 2, 3)),
    Variant("gates on all 4 levels", (4, 8, 12, 16), (1, 2, 3, 4)),
)


def resolve_data(path: Path, seg_images: int, seed: int) -> Path:
    """The segmentation folder to use, generating the synthetic set when ``path`` does not exist."""
    if (path / "images").is_dir():
        return path
    if (path / "segmentation" / "images").is_dir():
        return path / "segmentation"
    if path.exists():
        raise SystemExit(
            f"{path} is neither a segmentation folder (images/, masks/) nor a synth output folder "
            "(segmentation/images/); pass one of those, or a path that does not exist yet to generate data there."
        )
    try:
        from synth.dataset import generate_dataset
    except ImportError as error:
        raise SystemExit(f"{path} does not exist and synth cannot generate it ({error}); pass --data DIR") from error
    logger.info("generating %d synthetic segmentation frames in %s (seed %d)", seg_images, path, seed)
    summary = generate_dataset(
        path, train_good=1, test_good=0, test_defect_per_type=0, seg_images=seg_images, seed=seed
    )
    return Path(summary.segmentation_dir)


def run_variant(variant: Variant, args: argparse.Namespace, data: Path) -> dict[str, Any]:
    """Train and evaluate one configuration."""
    config = SegmenterConfig.small(
        backbone=args.backbone,
        dilation_rates=variant.dilation_rates,
        gated_levels=variant.gated_levels,
        input_long_side=args.image_size,
    )
    logger.info("training %s", variant.name)
    result = train_segmenter(
        config,
        data,
        image_size=args.image_size,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        label_fraction=args.label_fraction,
        seed=args.seed,
        max_minutes=args.minutes,
        patience=args.patience,
        num_threads=args.threads,
    )
    val_set = SegmentationFolder(data, args.image_size, result.val_files, num_classes=config.num_classes)
    scores = evaluate_segmenter(result.model, val_set, batch_size=1)
    return {
        "variant": variant.name,
        "dilation_rates": list(variant.dilation_rates),
        "gated_levels": list(variant.gated_levels),
        "val_miou": scores["miou"],
        "val_pixel_accuracy": scores["pixel_accuracy"],
        "ms_per_image": scores["ms_per_image"],
        "parameters_m": sum(p.numel() for p in result.model.parameters()) / 1e6,
        "epochs_run": len(result.history),
        "best_epoch": result.best_metrics["epoch"],
        "train_seconds": result.seconds,
        "stopped_early": result.stopped_early,
        "num_train": result.num_train,
        "num_val": result.num_val,
    }


def markdown_table(rows: list[dict[str, Any]]) -> str:
    """The results as a markdown table."""
    lines = [
        "| configuration | val mIoU | pixel acc. | ms / image | params (M) | epochs (best) | train s |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['variant']} | {row['val_miou']:.4f} | {row['val_pixel_accuracy']:.4f} | "
            f"{row['ms_per_image']:.1f} | {row['parameters_m']:.2f} | {row['epochs_run']} ({row['best_epoch']}) | "
            f"{row['train_seconds']:.0f} |"
        )
    return "\n".join(lines)


def write_markdown(path: Path, block: str) -> None:
    """Write ``block`` between the ablation markers of ``path``, or as a new file when ``path`` is missing.

    Raises:
        SystemExit: When ``path`` exists without the markers (it is not ours to overwrite).
    """
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"# Segmenter ablation (method paper, Table 2)\n\n{BEGIN_MARKER}\n{block}{END_MARKER}\n")
        return
    text = path.read_text()
    if BEGIN_MARKER not in text or END_MARKER not in text:
        raise SystemExit(
            f"{path} exists but has no {BEGIN_MARKER} ... {END_MARKER} section; add the two markers where the "
            "table belongs, or pass a new file"
        )
    head, rest = text.split(BEGIN_MARKER, 1)
    _, tail = rest.split(END_MARKER, 1)
    path.write_text(f"{head}{BEGIN_MARKER}\n{block}{END_MARKER}{tail}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="segmentation or synth folder (generated if missing)")
    parser.add_argument("--seg-images", type=int, default=80, help="frames to generate when --data is missing")
    parser.add_argument("--image-size", type=int, default=256, help="training/evaluation long side (px)")
    parser.add_argument("--epochs", type=int, default=100, help="maximum epochs per configuration")
    parser.add_argument("--minutes", type=float, default=5.0, help="wall-clock budget per configuration")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--patience", type=int, default=100, help="early-stopping patience (epochs)")
    parser.add_argument("--label-fraction", type=float, default=1.0)
    parser.add_argument("--backbone", default="resnet18")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument(
        "--only", nargs="*", type=int, default=None, help=f"indices of the variants to run (0..{len(VARIANTS) - 1})"
    )
    parser.add_argument("--out", type=Path, default=None, help="write the table as markdown here")
    parser.add_argument("--json", type=Path, default=None, help="write the raw results as JSON here")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    args = parse_args(argv)
    data = resolve_data(args.data, args.seg_images, args.seed)
    variants = [VARIANTS[i] for i in args.only] if args.only else list(VARIANTS)
    load_before = os.getloadavg()
    started = time.monotonic()
    rows = [run_variant(variant, args, data) for variant in variants]
    load_after = os.getloadavg()
    table = markdown_table(rows)
    print(table)
    command = " ".join(["python", "benchmarks/segmenter_ablation.py", *(argv if argv is not None else sys.argv[1:])])
    notes = (
        f"Generated {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC by `{command}`.\n\n"
        f"Data: {data} ({rows[0]['num_train']} training / {rows[0]['num_val']} validation frames, split seed "
        f"{args.seed}, label fraction {args.label_fraction}). {args.backbone}, random init, {args.image_size} px, "
        f"batch {args.batch_size}, lr {args.lr}, at most {args.epochs} epochs or {args.minutes} min per "
        f"configuration. Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch "
        f"{torch.__version__} with {torch.get_num_threads()} threads; load average {load_before[0]:.1f} before, "
        f"{load_after[0]:.1f} after ({time.monotonic() - started:.0f} s in all). ms / image: forward + argmax at "
        "batch size 1 on the validation frames.\n"
    )
    if args.out is not None:
        write_markdown(args.out, f"{notes}\n{table}\n")
        logger.info("wrote %s", args.out)
    if args.json is not None:
        args.json.write_text(json.dumps({"notes": notes, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
