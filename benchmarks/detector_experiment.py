"""Train and evaluate a detector in one process, for the figures in docs/detector.md (no MLflow, no Prefect).

Example (the small random-teacher configuration on an MVTec-layout folder, 10 minutes of training)::

    .venv/bin/python -m benchmarks.detector_experiment DATA --image-size 128 --minutes 10 --lr 0.001 \\
        --threads 1 --out results/detector-small.json --package results/detector-small

Prints one JSON summary (headline metrics, per-defect metrics, training record) and writes it to ``--out``.
The production path is ``defectflow train detector`` (Prefect flow, MLflow tracking, registry).
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path
from typing import Any

import torch

from models.detector.config import DetectorConfig
from models.detector.evaluation import evaluate_detector
from models.detector.package import save_detector
from models.detector.recipes import recipe_for
from models.detector.training import train_detector


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Train on ``args.data`` and evaluate on ``args.eval_data`` (default: the same folder's ``test/``)."""
    overrides: dict[str, Any] = json.loads(args.config) if args.config else {}
    recipe = recipe_for(args.backbone).with_overrides(
        image_size=args.image_size, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
        val_fraction=args.val_fraction,
    )  # fmt: skip
    overrides.update(image_size=recipe.image_size, teacher_weights=args.teacher_weights)
    config = DetectorConfig.for_backbone(args.backbone, **overrides)
    start = time.perf_counter()
    result = train_detector(
        config,
        args.data,
        recipe,
        seed=args.seed,
        max_minutes=args.minutes,
        device=args.device,
    )
    if args.package:
        save_detector(args.package, result.model.cpu(), result.calibration, result.package_extra())
    evaluation = evaluate_detector(result.model, result.calibration, args.eval_data or args.data, device=args.device)
    summary = {
        "command_args": vars(args),
        "config": config.to_dict(),
        "teacher_weights": result.weights_info.detail,
        "epochs_completed": result.epochs_completed,
        "stopped_by_time": result.stopped_by_time,
        "final_loss": result.history[-1]["loss"],
        "final_val_loss": result.history[-1].get("val_loss"),
        "seconds": result.seconds,
        "wall_seconds": time.perf_counter() - start,
        "fusion": result.fusion,
        "calibration": result.calibration.to_dict(),
        **{k: evaluation[k] for k in ("image_auroc", "pixel_auroc", "aupro", "image_f1_max", "pixel_f1_max")},
        "ms_per_image": evaluation["ms_per_image"],
        "per_defect": evaluation["per_defect"],
        "at_threshold": evaluation.get("at_threshold"),
        "worst_cases": evaluation["worst_cases"],
    }
    return summary


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description="Train and evaluate the reverse-distillation detector.")
    parser.add_argument("data", help="MVTec-layout folder (train/good; test/ and ground_truth/ for evaluation)")
    parser.add_argument("--eval-data", default=None, help="evaluate on this folder instead of DATA")
    parser.add_argument("--backbone", default="resnet18")
    parser.add_argument("--image-size", type=int, default=None, help="default: the backbone's recipe")
    parser.add_argument("--teacher-weights", default="none", help="'none', 'timm' or a state-dict file")
    parser.add_argument("--config", default=None, help="JSON overrides of DetectorConfig, e.g. '{\"vit_depth\": 1}'")
    parser.add_argument("--epochs", type=int, default=None, help="default: the backbone's recipe")
    parser.add_argument("--minutes", type=float, default=None, help="wall-time budget of the distillation")
    parser.add_argument("--batch-size", type=int, default=None, help="default: the backbone's recipe")
    parser.add_argument("--lr", type=float, default=None, help="default: the backbone's recipe")
    parser.add_argument("--val-fraction", type=float, default=None, help="default: the backbone's recipe")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (1 on a busy shared machine)")
    parser.add_argument("--out", default=None, help="write the JSON summary here")
    parser.add_argument("--package", default=None, help="save the trained model package here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)
    summary = run(args)
    text = json.dumps(summary, indent=2, default=float)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text)
    headline = {k: round(summary[k], 4) for k in ("image_auroc", "pixel_auroc", "aupro")}
    print(json.dumps({"headline": headline, "epochs": summary["epochs_completed"]}))
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
