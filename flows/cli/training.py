"""Commands that train models: ``train segmenter``, ``train detector``, ``retrain``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from flows.cli.base import (
    DaskAddressOption,
    EncoderWeightsOption,
    HomeOption,
    TeacherWeightsOption,
    VerboseOption,
    WorkersOption,
    _known_recipe,
    _print_metrics,
    app,
    console,
    fail,
    flow_command,
    print_table,
    resolve_weights_first,
    run_flow,
    run_local_flow,
    train_app,
)
from models.detector.recipes import RECOMMENDED_BACKBONE
from models.segmentation.recipes import DEFAULT_BACKBONE as SEGMENTER_BACKBONE
from models.weight_sources import PRETRAINED


@train_app.command("segmenter")
@flow_command
def train_segmenter_command(
    data: Annotated[Path, typer.Option("--data", help="Folder with images/ and masks/.")],
    backbone: Annotated[
        str, typer.Option("--backbone", help="resnet50 (paper) or resnet18 (small runs).")
    ] = SEGMENTER_BACKBONE,
    image_size: Annotated[
        int | None, typer.Option("--image-size", min=32, help="Long side in pixels. Default: the recipe's.")
    ] = None,
    epochs: Annotated[int | None, typer.Option("--epochs", min=1, help="Default: the backbone's recipe.")] = None,
    batch_size: Annotated[
        int | None, typer.Option("--batch-size", min=2, help="Default: the backbone's recipe.")
    ] = None,
    label_fraction: Annotated[float, typer.Option("--label-fraction", min=0.0, max=1.0)] = 1.0,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    encoder_weights: EncoderWeightsOption = PRETRAINED,
    max_minutes: Annotated[float | None, typer.Option("--max-minutes", help="Wall-clock training budget.")] = None,
    home: HomeOption = None,
    verbose: VerboseOption = False,
) -> None:
    """Train the AMAM U-Net segmenter (Prefect flow ``train_segmenter``)."""
    from flows.training import train_segmenter_flow

    if not 0.0 < label_fraction <= 1.0:
        raise fail("--label-fraction must be in (0, 1], e.g. 0.1 for a tenth of the masks")
    encoder_weights = resolve_weights_first(home, "encoder", backbone, encoder_weights)
    result = run_local_flow(
        train_segmenter_flow,
        data=str(data),
        home=str(home) if home else None,
        backbone=backbone,
        image_size=image_size,
        epochs=epochs,
        batch_size=batch_size,
        label_fraction=label_fraction,
        seed=seed,
        encoder_weights=encoder_weights,
        max_minutes=max_minutes,
    )
    _print_metrics(
        f"segmenter v{result.version} registered as segmenter@challenger",
        result,
        ["val_miou", "val_pixel_accuracy", "best_epoch", "train_images", "val_images", "training_seconds", "run_id"],
    )


@train_app.command("detector")
@flow_command
def train_detector_command(
    data: Annotated[Path, typer.Option("--data", help="MVTec AD layout folder (train/good, test/, ground_truth/).")],
    backbone: Annotated[
        str,
        typer.Option(
            "--backbone",
            help="Teacher (timm name): mobilenetv2_100 (recommended on CPU), wide_resnet50_2 (paper), resnet18...",
        ),
    ] = RECOMMENDED_BACKBONE,
    image_size: Annotated[
        int | None,
        typer.Option(
            "--image-size", min=64, help="Square input side, multiple of 32 (default: the backbone's recipe)."
        ),
    ] = None,
    epochs: Annotated[int | None, typer.Option("--epochs", min=1, help="Default: the backbone's recipe.")] = None,
    batch_size: Annotated[
        int | None, typer.Option("--batch-size", min=2, help="Default: the backbone's recipe.")
    ] = None,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    teacher_weights: TeacherWeightsOption = PRETRAINED,
    max_minutes: Annotated[float | None, typer.Option("--max-minutes", help="Wall-clock training budget.")] = None,
    lr: Annotated[
        float | None, typer.Option("--lr", min=0.0, help="Adam learning rate (default: the backbone's recipe).")
    ] = None,
    home: HomeOption = None,
    verbose: VerboseOption = False,
) -> None:
    """Train the reverse-distillation detector (Prefect flow ``train_detector``).

    Settings not given come from the backbone family's recipe (models/detector/recipes.py, docs/detector.md).
    """
    from flows.training import train_detector_flow

    _known_recipe(backbone)
    teacher_weights = resolve_weights_first(home, "teacher", backbone, teacher_weights)
    result = run_local_flow(
        train_detector_flow,
        data=str(data),
        home=str(home) if home else None,
        backbone=backbone,
        image_size=image_size,
        epochs=epochs,
        batch_size=batch_size,
        seed=seed,
        teacher_weights=teacher_weights,
        max_minutes=max_minutes,
        lr=lr,
    )
    if result.nonfinite_recoveries:
        console.print(
            f"[yellow]note:[/] training met non-finite values {result.nonfinite_recoveries} time(s) and recovered "
            "(restored the last finite weights, lowered the learning rate); the MLflow run has the record."
        )
    _print_metrics(
        f"detector v{result.version} registered as detector@challenger",
        result,
        ["image_auroc", "pixel_auroc", "aupro", "image_f1_max", "pixel_f1_max", "epochs_completed", "run_id"],
    )


@app.command()
@flow_command
def retrain(
    since_days: Annotated[int | None, typer.Option("--since-days", min=1, help="Use shifts scored in N days.")] = None,
    shifts: Annotated[list[str] | None, typer.Option("--shifts", help="Shift ids to use (repeat).")] = None,
    good_dir: Annotated[Path | None, typer.Option("--good-dir", help="Curated folder of good parts.")] = None,
    eval_data: Annotated[Path | None, typer.Option("--eval-data", help="Fixed evaluation set.")] = None,
    seg_data: Annotated[Path | None, typer.Option("--seg-data", help="Also retrain the segmenter on this.")] = None,
    backbone: Annotated[str, typer.Option("--backbone", help="Detector teacher (timm name).")] = RECOMMENDED_BACKBONE,
    image_size: Annotated[
        int | None, typer.Option("--image-size", min=64, help="Default: the backbone's recipe.")
    ] = None,
    epochs: Annotated[int | None, typer.Option("--epochs", min=1, help="Default: the backbone's recipe.")] = None,
    max_minutes: Annotated[float | None, typer.Option("--max-minutes")] = None,
    seg_backbone: Annotated[str, typer.Option("--seg-backbone", help="Segmenter encoder (with --seg-data).")] = (
        SEGMENTER_BACKBONE
    ),
    teacher_weights: TeacherWeightsOption = PRETRAINED,
    encoder_weights: EncoderWeightsOption = PRETRAINED,
    dask_address: DaskAddressOption = None,
    workers: WorkersOption = None,
    home: HomeOption = None,
    verbose: VerboseOption = False,
) -> None:
    """Retrain the detector on recent shifts' confidently normal frames; registers it as detector@challenger."""
    from flows.retraining import retrain as retrain_flow
    from storage.settings import load_settings

    settings = load_settings(home)
    _known_recipe(backbone)
    teacher_weights = resolve_weights_first(home, "teacher", backbone, teacher_weights)
    if seg_data:
        encoder_weights = resolve_weights_first(home, "encoder", seg_backbone, encoder_weights)
    result = run_flow(
        retrain_flow,
        settings,
        dask_address,
        workers,
        home=str(settings.home),
        since_days=since_days,
        shifts=shifts,
        good_dir=str(good_dir) if good_dir else None,
        eval_data=str(eval_data) if eval_data else None,
        seg_data=str(seg_data) if seg_data else None,
        backbone=backbone,
        image_size=image_size,
        epochs=epochs,
        max_minutes=max_minutes,
        seg_backbone=seg_backbone,
        teacher_weights=teacher_weights,
        encoder_weights=encoder_weights,
    )
    detector = result.detector
    rows = [("detector version", f"v{detector.version} (challenger)")]
    rows += [(k, v) for k, v in result.lineage.items()]
    metrics = {k: getattr(detector, k) for k in ("image_auroc", "pixel_auroc", "aupro")}
    rows += [(k, f"{value:.4f}") for k, value in metrics.items() if value is not None]
    print_table("retrained", rows)
    console.print("next: 'defectflow promote --model detector' decides whether it scores the next shift")
