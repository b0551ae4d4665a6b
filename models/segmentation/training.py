"""Supervised training of the AMAM U-Net with early stopping and an optional wall-clock budget.

Recipe (see ``docs/segmenter.md``): AdamW, cross-entropy + soft Dice, linear warm-up then cosine decay of the
learning rate, joint flip/rotation/zoom/colour augmentation, validation mIoU after every epoch, the best
epoch's weights restored at the end. The schedule's progress is the larger of the step fraction and the
fraction of the time budget used, so a run cut short by ``max_minutes`` still anneals its learning rate.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, RandomSampler

from models.segmentation.augmentation import AugmentConfig
from models.segmentation.builder import build_segmenter
from models.segmentation.config import SegmenterConfig
from models.segmentation.data import SegmentationFolder, list_samples, split_train_val
from models.segmentation.inference import evaluate_segmenter
from models.segmentation.loss import CrossEntropyDiceLoss
from models.segmentation.network import AmamUNet
from models.segmentation.preprocessing import pad_collate

logger = logging.getLogger(__name__)


@dataclass
class SegmenterTrainResult:
    """Outcome of :func:`train_segmenter`.

    Attributes:
        model: The network with the best validation mIoU weights restored, in eval mode.
        history: One dict per epoch: ``epoch``, ``train_loss``, ``val_miou``, ``val_pixel_accuracy``,
            ``seconds`` (that epoch, training and validation), plus ``lr`` (at the epoch's end), ``steps``
            (optimiser steps in the epoch) and ``elapsed`` (seconds since the start of the run).
        best_metrics: ``epoch``, ``val_miou``, ``val_pixel_accuracy``, ``val_per_class_iou`` of the kept epoch.
        train_files: Names of the training samples (after ``label_fraction``).
        val_files: Names of the validation samples.
        num_train: ``len(train_files)``.
        num_val: ``len(val_files)``.
        stopped_early: Why training ended before ``epochs`` (patience, time budget), ``None`` if it did not.
        seconds: Wall-clock duration of the whole call.
        recipe: The training hyper-parameters, JSON-safe (for experiment tracking and the model package).
    """

    model: AmamUNet
    history: list[dict[str, float]]
    best_metrics: dict[str, Any]
    train_files: list[str]
    val_files: list[str]
    num_train: int
    num_val: int
    stopped_early: str | None
    seconds: float
    recipe: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """JSON-safe summary (no model, no file lists) for a model package's ``extra`` or run tags."""
        return {
            "best_metrics": self.best_metrics,
            "num_train": self.num_train,
            "num_val": self.num_val,
            "epochs_run": len(self.history),
            "stopped_early": self.stopped_early,
            "seconds": round(self.seconds, 1),
            "recipe": self.recipe,
        }


class _WeightAverage:
    """Exponential moving average of a model's parameters and buffers (Polyak averaging, as timm's ModelEma).

    BatchNorm running statistics are averaged like the weights, so the averaged model is evaluated as is.
    """

    def __init__(self, model: torch.nn.Module, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"ema_decay must be in (0, 1) or None, got {decay}")
        self.decay = decay
        self.model = copy.deepcopy(model).eval()
        for parameter in self.model.parameters():
            parameter.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: torch.nn.Module, step: int) -> None:
        decay = min(self.decay, (1 + step) / (10 + step))
        averaged, current = [], []
        for mine, theirs in zip(self.model.state_dict().values(), model.state_dict().values(), strict=True):
            if mine.dtype.is_floating_point:
                averaged.append(mine)
                current.append(theirs.detach())
            else:
                mine.copy_(theirs)
        torch._foreach_lerp_(averaged, current, 1.0 - decay)


def _learning_rate(base_lr: float, progress: float, warmup_fraction: float, min_lr_ratio: float) -> float:
    """Linear warm-up to ``base_lr`` over ``warmup_fraction`` of the run, then cosine decay."""
    progress = min(max(progress, 0.0), 1.0)
    if warmup_fraction > 0 and progress < warmup_fraction:
        return base_lr * max(progress / warmup_fraction, 0.02)
    span = max(1.0 - warmup_fraction, 1e-8)
    cosine = 0.5 * (1 + math.cos(math.pi * (progress - warmup_fraction) / span))
    return base_lr * (min_lr_ratio + (1 - min_lr_ratio) * cosine)


@contextlib.contextmanager
def _torch_threads(num_threads: int | None) -> Iterator[None]:
    """Use ``num_threads`` intra-op threads inside the block, restoring the previous setting after it."""
    if num_threads is None:
        yield
        return
    if num_threads < 1:
        raise ValueError(f"num_threads must be positive or None, got {num_threads}")
    previous = torch.get_num_threads()
    torch.set_num_threads(num_threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def train_segmenter(
    config: SegmenterConfig,
    data_dir: str | Path,
    *,
    image_size: int = 256,
    epochs: int = 30,
    batch_size: int = 8,
    lr: float = 2e-3,
    weight_decay: float = 1e-4,
    label_fraction: float = 1.0,
    val_fraction: float = 0.2,
    seed: int = 0,
    max_minutes: float | None = None,
    patience: int = 8,
    min_steps_per_epoch: int = 10,
    warmup_fraction: float = 0.05,
    augment: AugmentConfig | None = None,
    device: str | torch.device = "cpu",
    num_threads: int | None = None,
    channels_last: bool = True,
    ema_decay: float | None = None,
    on_epoch: Callable[[dict[str, float]], None] | None = None,
) -> SegmenterTrainResult:
    """Train a segmenter on ``data_dir`` and return the best-validation model.

    Args:
        config: Architecture (``config.encoder_weights`` decides the encoder's initial weights).
        data_dir: Dataset directory with ``images/`` and ``masks/`` (see :mod:`models.segmentation.data`).
        image_size: Training and validation long side in pixels (inference uses ``config.input_long_side``;
            keep them equal unless you mean otherwise).
        epochs: Maximum number of epochs.
        batch_size: Samples per step; batches are always full (samples repeat when there are fewer),
            because the AMAM's pooling path has BatchNorm on a 1x1 map.
        lr: Peak AdamW learning rate.
        weight_decay: AdamW weight decay.
        label_fraction: Fraction of the training frames whose masks are used (at least one frame).
        val_fraction: Fraction of frames held out for validation (independent of ``label_fraction``).
        seed: Seeds the split, the initialisation, the sampling order and the augmentation.
        max_minutes: Wall-clock budget for the whole call, validation included; training stops when the next
            validation would overrun it.
        patience: Stop after this many epochs without a better validation mIoU.
        min_steps_per_epoch: An epoch has at least this many steps, so that a small labelled set (low
            ``label_fraction``) still trains between two validations.
        warmup_fraction: Fraction of the run spent warming the learning rate up.
        augment: Augmentation strength; ``None`` uses :class:`AugmentConfig` defaults; ``AugmentConfig.strong()``
            suits few labelled frames (``label_fraction`` around 0.1); ``AugmentConfig.none()`` turns it off.
        device: ``"cpu"``, ``"cuda"``, ...
        num_threads: When given, torch uses this many intra-op threads during the call (restored afterwards);
            ``None`` leaves torch's setting. On a shared, busy machine 1 thread is often much faster than 2:
            OpenMP threads spin at every barrier while another process holds the other core.
        channels_last: Use the channels-last memory layout (faster convolutions on CPU; numerically the same
            network).
        ema_decay: Validate and keep an exponential moving average of the weights (and BatchNorm statistics)
            with this decay, warmed up as ``min(ema_decay, (1 + step) / (10 + step))``; ``None`` validates the raw
            weights (the default: in our 5-minute runs the average's lag cost more than its smoothness gained).
        on_epoch: Called after every epoch with that epoch's history dict (e.g. to log to MLflow).

    Returns:
        The trained model (eval mode, best weights), its history and the split.

    Raises:
        FileNotFoundError, ValueError: For a malformed dataset (see :class:`SegmentationFolder`) or settings.
    """
    with _torch_threads(num_threads):
        return _train(
            config, data_dir, image_size=image_size, epochs=epochs, batch_size=batch_size, lr=lr,
            weight_decay=weight_decay, label_fraction=label_fraction, val_fraction=val_fraction, seed=seed,
            max_minutes=max_minutes, patience=patience, min_steps_per_epoch=min_steps_per_epoch,
            warmup_fraction=warmup_fraction, augment=augment, device=device, channels_last=channels_last,
            ema_decay=ema_decay, on_epoch=on_epoch,
        )  # fmt: skip


def _train(
    config: SegmenterConfig,
    data_dir: str | Path,
    *,
    image_size: int,
    epochs: int,
    batch_size: int,
    lr: float,
    weight_decay: float,
    label_fraction: float,
    val_fraction: float,
    seed: int,
    max_minutes: float | None,
    patience: int,
    min_steps_per_epoch: int,
    warmup_fraction: float,
    augment: AugmentConfig | None,
    device: str | torch.device,
    channels_last: bool,
    ema_decay: float | None,
    on_epoch: Callable[[dict[str, float]], None] | None,
) -> SegmenterTrainResult:
    start = time.monotonic()
    if epochs < 1 or batch_size < 1:
        raise ValueError(f"epochs and batch_size must be positive, got {epochs} and {batch_size}")
    if max_minutes is not None and max_minutes <= 0:
        raise ValueError(f"max_minutes must be positive or None, got {max_minutes}")
    device = torch.device(device)
    augment = augment if augment is not None else AugmentConfig()
    torch.manual_seed(seed)

    if config.input_long_side != image_size:
        logger.warning(
            "training at image_size=%d but config.input_long_side=%d: inference will run at a resolution the "
            "model was not trained at; set SegmenterConfig(input_long_side=%d) unless this is intended",
            image_size, config.input_long_side, image_size,
        )  # fmt: skip
    names = list(list_samples(data_dir))
    train_names, val_names = split_train_val(names, val_fraction, seed, label_fraction)
    train_set = SegmentationFolder(data_dir, image_size, train_names, augment=augment, num_classes=config.num_classes)
    val_set = SegmentationFolder(data_dir, image_size, val_names, augment=None, num_classes=config.num_classes)

    model = build_segmenter(config).to(device)
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=memory_format)
    average = _WeightAverage(model, ema_decay) if ema_decay is not None else None
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay, foreach=True)
    criterion = CrossEntropyDiceLoss()

    steps_per_epoch = max(math.ceil(len(train_set) / batch_size), min_steps_per_epoch)
    sampler = RandomSampler(
        train_set, num_samples=steps_per_epoch * batch_size, generator=torch.Generator().manual_seed(seed)
    )
    loader = DataLoader(train_set, batch_size=batch_size, sampler=sampler, drop_last=True, collate_fn=pad_collate)
    total_steps = epochs * steps_per_epoch
    budget = max_minutes * 60.0 if max_minutes is not None else None

    recipe = {
        "image_size": image_size, "epochs": epochs, "batch_size": batch_size, "lr": lr,
        "weight_decay": weight_decay, "label_fraction": label_fraction, "val_fraction": val_fraction,
        "seed": seed, "max_minutes": max_minutes, "patience": patience, "min_steps_per_epoch": min_steps_per_epoch,
        "steps_per_epoch": steps_per_epoch, "warmup_fraction": warmup_fraction, "optimizer": "AdamW",
        "loss": "cross_entropy + soft_dice", "augment": augment.to_dict(), "device": str(device),
        "encoder_weights": model.weights_info.source, "ema_decay": ema_decay,
    }  # fmt: skip
    logger.info(
        "training segmenter %s on %d frames (%d validation), %d steps/epoch, up to %d epochs%s",
        config.backbone, len(train_set), len(val_set), steps_per_epoch, epochs,
        f", budget {max_minutes} min" if max_minutes else "",
    )  # fmt: skip

    history: list[dict[str, float]] = []
    best_state: dict[str, torch.Tensor] | None = None
    best_metrics: dict[str, Any] = {"epoch": 0, "val_miou": float("-inf")}
    stopped_early: str | None = None
    epochs_without_gain = 0
    step = 0
    step_seconds = 0.0
    last_step_seconds = 0.0
    last_val_seconds: float | None = None
    current_lr = 0.0

    for epoch in range(1, epochs + 1):
        epoch_start = time.monotonic()
        model.train()
        losses: list[float] = []
        out_of_time = False
        tick = time.monotonic()
        for images, masks in loader:
            if budget is not None and losses:
                # Conservative: the next step may be as slow as the slowest recent one (shared machines).
                next_step = max(step_seconds, last_step_seconds)
                estimated_val = (
                    last_val_seconds
                    if last_val_seconds is not None
                    else 0.5 * next_step * max(len(val_set) / batch_size, 1)
                )
                if time.monotonic() - start + next_step + estimated_val >= budget:
                    out_of_time = True
                    break
            progress = step / total_steps
            if budget is not None:
                progress = max(progress, (time.monotonic() - start) / budget)
            current_lr = _learning_rate(lr, progress, warmup_fraction, min_lr_ratio=0.01)
            for group in optimizer.param_groups:
                group["lr"] = current_lr
            images = images.to(device, memory_format=memory_format)
            masks = masks.to(device)
            loss = criterion(model(images), masks)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if average is not None:
                average.update(model, step)
            losses.append(float(loss.detach()))
            step += 1
            this_step = time.monotonic() - tick  # loading, augmentation and the optimiser step
            tick = time.monotonic()
            step_seconds = this_step if step == 1 else 0.8 * step_seconds + 0.2 * this_step
            last_step_seconds = this_step

        val_start = time.monotonic()
        evaluated = average.model if average is not None else model
        scores = evaluate_segmenter(evaluated, val_set, device=device, batch_size=batch_size)
        last_val_seconds = time.monotonic() - val_start
        record = {
            "epoch": epoch,
            "train_loss": float(sum(losses) / len(losses)) if losses else float("nan"),
            "val_miou": float(scores["miou"]),
            "val_pixel_accuracy": float(scores["pixel_accuracy"]),
            "seconds": time.monotonic() - epoch_start,
            "lr": current_lr,
            "steps": len(losses),
            "elapsed": time.monotonic() - start,
        }
        history.append(record)
        logger.info(
            "epoch %d: loss %.4f, val mIoU %.4f, pixel acc %.4f (%.1f s)",
            epoch, record["train_loss"], record["val_miou"], record["val_pixel_accuracy"], record["seconds"],
        )  # fmt: skip
        if on_epoch is not None:
            on_epoch(dict(record))

        if scores["miou"] > best_metrics["val_miou"] + 1e-6:
            best_metrics = {
                "epoch": epoch,
                "val_miou": float(scores["miou"]),
                "val_pixel_accuracy": float(scores["pixel_accuracy"]),
                "val_per_class_iou": scores["per_class_iou"],
            }
            best_state = {k: v.detach().to("cpu", copy=True) for k, v in evaluated.state_dict().items()}
            epochs_without_gain = 0
        else:
            epochs_without_gain += 1

        if out_of_time:
            stopped_early = f"time budget of {max_minutes} min reached after {epoch} epoch(s)"
            break
        if epochs_without_gain >= patience and epoch < epochs:
            stopped_early = f"no validation mIoU gain for {patience} epochs (best at epoch {best_metrics['epoch']})"
            break

    if best_state is not None:
        model.load_state_dict(best_state)
    model = model.to(memory_format=torch.contiguous_format)
    model.eval()
    return SegmenterTrainResult(
        model=model,
        history=history,
        best_metrics=best_metrics,
        train_files=list(train_names),
        val_files=list(val_names),
        num_train=len(train_names),
        num_val=len(val_names),
        stopped_early=stopped_early,
        seconds=time.monotonic() - start,
        recipe=recipe,
    )
