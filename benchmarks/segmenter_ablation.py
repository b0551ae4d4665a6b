"""The method paper's Table 2 on our data: AMAM dilation rates, and gates on three levels versus four.

Trains one segmenter per configuration with the same recipe, seed, split and time budget, then evaluates each
on the held-out validation frames (mIoU, pixel accuracy, ms per image at batch size 1) and prints a table;
``--out`` also writes it as markdown.

Example (the full run: 5 configurations x 5 min on 2 CPU cores, about 27 min)::

    OMP_WAIT_POLICY=PASSIVE python benchmarks/segmenter_ablation.py --data /tmp/seg-synth \\
        --test-data /tmp/seg-synth-test --image-size 256 --minutes 5 --out docs/segmenter.md

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

from models.segmentation import (
    AugmentConfig,
    SegmentationFolder,
    SegmenterConfig,
    evaluate_segmenter,
    train_segmenter,
)

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


def run_variant(variant: Variant, args: argparse.Namespace, data: Path, test_data: Path | None) -> dict[str, Any]:
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
        augment=AugmentConfig.preset(args.augment),
    )
    val_set = SegmentationFolder(data, args.image_size, result.val_files, num_classes=config.num_classes)
    scores = evaluate_segmenter(result.model, val_set, batch_size=1)
    test = evaluate_segmenter(result.model, test_data, image_size=args.image_size) if test_data else None
    return {
        "variant": variant.name,
        "dilation_rates": list(variant.dilation_rates),
        "gated_levels": list(variant.gated_levels),
        "val_miou": scores["miou"],
        "val_pixel_accuracy": scores["pixel_accuracy"],
        "ms_per_image": scores["ms_per_image"],
        "test_miou": test["miou"] if test else None,
        "test_images": test["images"] if test else 0,
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
    with_test = any(row["test_miou"] is not None for row in rows)
    test_head, test_rule = (" test mIoU |", "---|") if with_test else ("", "")
    lines = [
        f"| configuration | val mIoU | pixel acc. |{test_head} ms / image | params (M) | epochs (best) | train s |",
        f"|---|---|---|{test_rule}---|---|---|---|",
    ]
    for row in rows:
        test_cell = (
            f" {row['test_miou']:.4f} |"
            if with_test and row["test_miou"] is not None
            else (" – |" if with_test else "")
        )
        lines.append(
            f"| {row['variant']} | {row['val_miou']:.4f} | {row['val_pixel_accuracy']:.4f} |{test_cell} "
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
    parser.add_argument(
        "--augment", choices=["default", "strong", "none"], default="default", help="augmentation preset"
    )
    parser.add_argument(
        "--test-data", type=Path, default=None, help="independent frames to evaluate on too (generated if missing)"
    )
    parser.add_argument("--test-images", type=int, default=40, help="frames to generate when --test-data is missing")
    parser.add_argument("--test-seed", type=int, default=1, help="synth seed of generated --test-data")
    parser.add_argument("--backbone", default="resnet18")
    parser.add_argument("--seed", type=int, default=0, help="split, initialisation and sampling seed")
    parser.add_argument("--data-seed", type=int, default=0, help="synth seed of generated --data")
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
    if args.data_seed == args.test_seed and args.test_data is not None:
        raise SystemExit("--data-seed and --test-seed must differ, or the test frames repeat the training frames")
    data = resolve_data(args.data, args.seg_images, args.data_seed)
    test_data = resolve_data(args.test_data, args.test_images, args.test_seed) if args.test_data else None
    if test_data is not None and test_data.resolve() == data.resolve():
        raise SystemExit("--test-data must hold other frames than --data")
    variants = [VARIANTS[i] for i in args.only] if args.only else list(VARIANTS)
    load_before = os.getloadavg()
    started = time.monotonic()
    rows = [run_variant(variant, args, data, test_data) for variant in variants]
    load_after = os.getloadavg()
    table = markdown_table(rows)
    print(table)
    command = " ".join(["python", "benchmarks/segmenter_ablation.py", *(argv if argv is not None else sys.argv[1:])])
    test_note = (
        f" Test: {test_data} ({rows[0]['test_images']} frames used neither for training nor for epoch selection)."
        if test_data
        else ""
    )
    notes = (
        f"Generated {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC by `{command}`.\n\n"
        f"Data: {data} ({rows[0]['num_train']} training / {rows[0]['num_val']} validation frames, split seed "
        f"{args.seed}, label fraction {args.label_fraction}).{test_note} {args.backbone}, random init, "
        f"{args.image_size} px, augmentation '{args.augment}', batch {args.batch_size}, lr {args.lr}, at most "
        f"{args.epochs} epochs or {args.minutes} min per configuration. Machine: "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__} with "
        f"{torch.get_num_threads()} threads; load average {load_before[0]:.1f} before, {load_after[0]:.1f} after "
        f"({time.monotonic() - started:.0f} s in all). val mIoU: best epoch on the validation frames (also used to "
        "pick that epoch); ms / image: forward + argmax at batch size 1 on the validation frames.\n"
    )
    if args.out is not None:
        write_markdown(args.out, f"{notes}\n{table}\n")
        logger.info("wrote %s", args.out)
    if args.json is not None:
        args.json.write_text(json.dumps({"notes": notes, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
