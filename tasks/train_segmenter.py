"""Task: train the segmenter, log it to MLflow and register it as ``segmenter@challenger``."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from prefect import task

from models.imaging import read_image, to_rgb
from models.packaging import save_model_package
from models.segmentation.builder import SEGMENTER_KIND
from models.segmentation.inference import predict_mask
from models.segmentation.recipes import DEFAULT_BACKBONE, recipe_for
from models.segmentation.training import SegmenterTrainResult, train_segmenter
from models.weight_sources import PRETRAINED
from storage.settings import Settings, load_settings
from storage.tracking import EXPERIMENT_TRAINING, log_artifact, log_metrics, log_params, tracked_run
from tasks.backbone_weights import ENCODER, resolve_backbone_weights
from tasks.plots import line_plot
from tasks.publish_model import publish_model
from tasks.render_overlays import overlay_image


def training_device() -> str:
    """CUDA where the process has a GPU, else the CPU."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def _mask_overlays(model: Any, data_dir: Path, names: list[str], out: Path, long_side: int) -> list[Path]:
    images = {p.stem: p for p in (data_dir / "images").iterdir() if p.is_file()}
    written = []
    for name in names[:6]:
        stem = Path(name).stem
        if stem not in images:
            continue
        frame = to_rgb(read_image(images[stem]))
        mask = predict_mask(model, frame, long_side=long_side).astype(np.float32)
        heat = np.asarray(Image.fromarray(mask).resize((frame.shape[1], frame.shape[0]), Image.Resampling.NEAREST))
        path = out / f"val_{stem}.jpg"
        overlay_image(frame, heat, None).save(path, quality=88)
        written.append(path)
    return written


@task(name="train-segmenter")
def train_segmenter_task(
    home: str,
    data_dir: str,
    backbone: str = DEFAULT_BACKBONE,
    image_size: int | None = None,
    epochs: int | None = None,
    batch_size: int | None = None,
    label_fraction: float = 1.0,
    seed: int = 0,
    encoder_weights: str = PRETRAINED,
    max_minutes: float | None = None,
    tags: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Train on ``data_dir`` (``images/``, ``masks/``), log everything, register; returns version and metrics.

    The architecture and every training setting left ``None`` come from the backbone family's recipe
    (:mod:`models.segmentation.recipes`); ``encoder_weights`` ``"pretrained"`` is resolved through the workspace's
    weights settings, then timm (:mod:`models.weight_sources`).
    """
    settings = load_settings(home)
    recipe = recipe_for(backbone).with_overrides(image_size=image_size, epochs=epochs, batch_size=batch_size)
    encoder_weights = resolve_backbone_weights(settings, ENCODER, backbone, encoder_weights)
    config = recipe.config(backbone, encoder_weights)
    device = training_device()
    with tracked_run(settings, EXPERIMENT_TRAINING, run_name=f"segmenter-{backbone}-{recipe.image_size}") as run:
        params: dict[str, Any] = {
            "model": SEGMENTER_KIND,
            "data_dir": data_dir,
            "backbone": backbone,
            "label_fraction": label_fraction,
            "seed": seed,
            "device": device,
            "max_minutes": max_minutes,
            **recipe.to_params(),
            **{f"config_{k}": v for k, v in config.to_dict().items()},
        }
        log_params(params)
        result = train_segmenter(
            config,
            data_dir,
            recipe,
            label_fraction=label_fraction,
            seed=seed,
            max_minutes=max_minutes,
            device=device,
            on_epoch=lambda entry: log_metrics(entry, step=int(entry["epoch"])),
        )
        final = _log_outcome(result)
        with tempfile.TemporaryDirectory() as scratch:
            out = Path(scratch)
            _log_curves_and_overlays(result, Path(data_dir), out, recipe.image_size)
            version = _register(settings, result, config.to_dict(), final, out, run.info.run_id, data_dir, tags)
    return _summary(result, version, run.info.run_id, final)


def _register(
    settings: Settings,
    result: SegmenterTrainResult,
    config: dict[str, Any],
    final: dict[str, Any],
    scratch: Path,
    run_id: str,
    data_dir: str,
    tags: dict[str, str] | None,
) -> str:
    """Package the trained segmenter and register it as challenger, tagged with its data folder, its validation
    mIoU, the encoder's weights and the caller's ``tags``; returns the version."""
    package = save_model_package(
        scratch / "package", SEGMENTER_KIND, config, result.model, {"training": result.summary()}
    )
    weights = result.model.weights_info
    return publish_model(
        settings,
        SEGMENTER_KIND,
        package,
        run_id,
        {
            "data_dir": data_dir,
            "val_miou": f"{final['val_miou']:.4f}",
            "encoder_weights": weights.source,
            "encoder_weights_detail": weights.detail,
            **(tags or {}),
        },
    )


def _summary(result: SegmenterTrainResult, version: str, run_id: str, final: dict[str, Any]) -> dict[str, Any]:
    """The task's small record: version, run, the encoder's weights and the kept epoch's metrics."""
    weights = result.model.weights_info
    return {
        "model": SEGMENTER_KIND,
        "version": version,
        "run_id": run_id,
        "encoder_weights": weights.source,
        "encoder_pretrained": weights.pretrained,
        "encoder_weights_detail": weights.detail,
        **final,
        "stopped_early": result.stopped_early,
    }


def _log_outcome(result: SegmenterTrainResult) -> dict[str, Any]:
    """The encoder's weights source (params) and the kept epoch's metrics; returns the metrics."""
    log_params(result.model.weights_info.as_params("encoder"))
    best = result.best_metrics
    final = {
        "val_miou": best["val_miou"],
        "val_pixel_accuracy": best["val_pixel_accuracy"],
        "best_epoch": best["epoch"],
        "train_images": result.num_train,
        "val_images": result.num_val,
        "training_seconds": result.seconds,
    }
    log_metrics(final)
    return final


def _log_curves_and_overlays(result: SegmenterTrainResult, data_dir: Path, out: Path, long_side: int) -> None:
    """The loss and mIoU curves and a few validation frames with their predicted masks, as run artifacts."""
    history = result.history
    epochs_axis = [h["epoch"] for h in history]
    series = {
        "train loss": (epochs_axis, [h["train_loss"] for h in history]),
        "val mIoU": (epochs_axis, [h["val_miou"] for h in history]),
    }
    log_artifact(line_plot(out / "training_curves.png", series, "epoch", "value"))
    for path in _mask_overlays(result.model.cpu(), data_dir, result.val_files, out, long_side):
        log_artifact(path, "val_overlays")
