"""Supervised training of the AMAM U-Net with early stopping and an optional wall-clock budget.

Recipe (see ``docs/segmenter.md``): AdamW, cross-entropy + soft Dice, linear warm-up then cosine decay of the
learning rate, joint flip/rotation/zoom/colour augmentation, validation mIoU after every epoch, the best
epoch's weights restored at the end. The schedule's progress is the larger of the step fraction and the
fraction of the time budget used, so a run cut short by ``max_minutes`` still anneals its learning rate.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, RandomSampler

from models.divergence_guard import DivergenceGuard
from models.segmentation.augmentation import AugmentConfig
from models.segmentation.builder import build_segmenter
from models.segmentation.config import SegmenterConfig
from models.segmentation.data import SegmentationFolder, list_samples, split_train_val
from models.segmentation.inference import evaluate_segmenter
from models.segmentation.loss import CrossEntropyDiceLoss
from models.segmentation.network import AmamUNet
from models.segmentation.preprocessing import pad_collate
from models.segmentation.recipes import SegmenterRecipe, training_recipe
from models.training_run import EpochCallback, EpochHistory, TimeBudget, torch_threads

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
        divergence: Non-finite steps met and what was done about them (:class:`DivergenceGuard`).
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
    divergence: dict[str, Any] = field(default_factory=dict)

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
            "divergence": self.divergence,
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


def train_segmenter(
    config: SegmenterConfig,
    data_dir: str | Path,
    recipe: SegmenterRecipe | None = None,
    *,
    label_fraction: float = 1.0,
    seed: int = 0,
    max_minutes: float | None = None,
    augment: AugmentConfig | None = None,
    device: str | torch.device = "cpu",
    num_threads: int | None = None,
    on_epoch: EpochCallback | None = None,
    **settings: Any,
) -> SegmenterTrainResult:
    """Train a segmenter on ``data_dir`` and return the best-validation model.

    Args:
        config: Architecture (``config.encoder_weights`` decides the encoder's initial weights).
        data_dir: Dataset directory with ``images/`` and ``masks/`` (see :mod:`models.segmentation.data`).
        recipe: Training settings (:class:`SegmenterRecipe`); default: the recipe of ``config.backbone``'s family,
            at the config's input size.
        label_fraction: Fraction of the training frames whose masks are used (at least one frame).
        seed: Seeds the split, the initialisation, the sampling order and the augmentation.
        max_minutes: Wall-clock budget for the whole call, validation included; training stops when the next
            validation would overrun it.
        augment: Augmentation strength; ``None``: :meth:`AugmentConfig.strong` below half the labels (few labels
            overfit within a few epochs under the default one, docs/segmenter.md), else the default;
            ``AugmentConfig.none()`` turns it off.
        device: ``"cpu"``, ``"cuda"``, ...
        num_threads: When given, torch uses this many intra-op threads during the call (restored afterwards).
        on_epoch: Called after every epoch with that epoch's history dict (e.g. to log to MLflow).
        **settings: Any training setting of :class:`SegmenterRecipe` to replace (``epochs=1``, ``image_size=...``).

    Returns:
        The trained model (eval mode, best weights), its history and the split.

    Raises:
        FileNotFoundError, ValueError: For a malformed dataset (see :class:`SegmentationFolder`) or settings.
        TrainingDivergedError: When no epoch ever finished with a finite loss.
    """
    base = recipe or training_recipe(config.backbone).with_overrides(image_size=config.input_long_side)
    recipe = base.with_overrides(**settings)
    if recipe.epochs < 1 or recipe.batch_size < 1:
        raise ValueError(f"epochs and batch_size must be positive, got {recipe.epochs} and {recipe.batch_size}")
    if augment is None:
        augment = AugmentConfig.strong() if label_fraction < 0.5 else AugmentConfig()
    with torch_threads(num_threads):
        return _train(
            config, data_dir, recipe, _Run(label_fraction, seed, TimeBudget(max_minutes), augment, device), on_epoch
        )


@dataclass
class _Run:
    """What a single run adds to its recipe."""

    label_fraction: float
    seed: int
    budget: TimeBudget
    augment: AugmentConfig
    device: str | torch.device


def _train(
    config: SegmenterConfig,
    data_dir: str | Path,
    recipe: SegmenterRecipe,
    run: _Run,
    on_epoch: EpochCallback | None,
) -> SegmenterTrainResult:
    device = torch.device(run.device)
    torch.manual_seed(run.seed)
    if config.input_long_side != recipe.image_size:
        logger.warning(
            "training at image_size=%d but config.input_long_side=%d: inference will run at a resolution the "
            "model was not trained at; set SegmenterConfig(input_long_side=%d) unless this is intended",
            recipe.image_size, config.input_long_side, recipe.image_size,
        )  # fmt: skip
    train_names, val_names, train_set, val_set = _datasets(config, data_dir, recipe, run)
    model = build_segmenter(config).to(device)
    memory_format = torch.channels_last if recipe.channels_last else torch.contiguous_format
    model = model.to(memory_format=memory_format)
    loader, steps_per_epoch = _loader(train_set, recipe, run.seed)
    record = _record(recipe, run, steps_per_epoch, device, model)
    logger.info(
        "training segmenter %s on %d frames (%d validation), %d steps/epoch, up to %d epochs%s",
        config.backbone, len(train_set), len(val_set), steps_per_epoch, recipe.epochs,
        f", budget {run.budget.max_minutes} min" if run.budget.max_minutes else "",
    )  # fmt: skip
    loop = _Loop(model, recipe, run.budget, steps_per_epoch, val_set)
    history = EpochHistory(logger, run.budget, on_epoch)
    best_state, best_metrics, stopped_early = loop.fit(loader, history, memory_format)
    if best_state is not None:
        model.load_state_dict(best_state)
    model = model.to(memory_format=torch.contiguous_format)
    model.eval()
    return SegmenterTrainResult(
        model=model,
        history=history.entries,
        best_metrics=best_metrics,
        train_files=list(train_names),
        val_files=list(val_names),
        num_train=len(train_names),
        num_val=len(val_names),
        stopped_early=stopped_early,
        seconds=run.budget.elapsed(),
        recipe=record,
        divergence=loop.guard.summary(),
    )


def _datasets(
    config: SegmenterConfig, data_dir: str | Path, recipe: SegmenterRecipe, run: _Run
) -> tuple[list[str], list[str], SegmentationFolder, SegmentationFolder]:
    """Split the samples (seeded, ``label_fraction`` of the training ones kept) and open both sets.

    Only the training set is augmented; validation sees the frames as inference will.
    """
    names = list(list_samples(data_dir))
    train_names, val_names = split_train_val(names, recipe.val_fraction, run.seed, run.label_fraction)
    size, classes = recipe.image_size, config.num_classes
    train_set = SegmentationFolder(data_dir, size, train_names, augment=run.augment, num_classes=classes)
    val_set = SegmentationFolder(data_dir, size, val_names, augment=None, num_classes=classes)
    return train_names, val_names, train_set, val_set


def _loader(train_set: SegmentationFolder, recipe: SegmenterRecipe, seed: int) -> tuple[DataLoader, int]:
    """Loader and steps per epoch: a seeded sampler drawing a fixed number of full batches per epoch.

    At least ``min_steps_per_epoch`` steps, so an epoch on a small set is not just a step or two.
    """
    steps_per_epoch = max(math.ceil(len(train_set) / recipe.batch_size), recipe.min_steps_per_epoch)
    sampler = RandomSampler(
        train_set,
        num_samples=steps_per_epoch * recipe.batch_size,
        generator=torch.Generator().manual_seed(seed),
    )
    loader = DataLoader(
        train_set, batch_size=recipe.batch_size, sampler=sampler, drop_last=True, collate_fn=pad_collate
    )
    return loader, steps_per_epoch


def _record(
    recipe: SegmenterRecipe, run: _Run, steps_per_epoch: int, device: torch.device, model: AmamUNet
) -> dict[str, Any]:
    """The run's hyper-parameters, JSON-safe, for experiment tracking and the model package."""
    return {
        **recipe.training_settings(),
        "recipe_family": recipe.family,
        "label_fraction": run.label_fraction,
        "seed": run.seed,
        "max_minutes": run.budget.max_minutes,
        "steps_per_epoch": steps_per_epoch,
        "optimizer": "AdamW",
        "loss": "cross_entropy + soft_dice",
        "augment": run.augment.to_dict(),
        "device": str(device),
        "encoder_weights": model.weights_info.source,
    }


class _Loop:
    """The epochs of one run: steps under the warm-up/cosine schedule and the budget, validation, best weights."""

    def __init__(
        self,
        model: AmamUNet,
        recipe: SegmenterRecipe,
        budget: TimeBudget,
        steps_per_epoch: int,
        val_set: SegmentationFolder,
    ) -> None:
        self.model = model
        self.recipe = recipe
        self.budget = budget
        self.val_set = val_set
        self.device = next(model.parameters()).device
        self.total_steps = recipe.epochs * steps_per_epoch
        self.optimizer = torch.optim.AdamW(
            model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay, foreach=True
        )
        self.criterion = CrossEntropyDiceLoss()
        self.average = _WeightAverage(model, recipe.ema_decay) if recipe.ema_decay is not None else None
        self.guard = DivergenceGuard([model], self.optimizer)
        self.step = 0
        self.step_seconds = 0.0  # smoothed seconds per step (loading, augmentation, optimiser step)
        self.last_step_seconds = 0.0
        self.last_val_seconds: float | None = None
        self.lr = 0.0

    def fit(
        self, loader: DataLoader, history: EpochHistory, memory_format: torch.memory_format
    ) -> tuple[dict[str, torch.Tensor] | None, dict[str, Any], str | None]:
        """Run the epochs; returns the best weights, their metrics and why training stopped early (or ``None``)."""
        recipe = self.recipe
        best_state: dict[str, torch.Tensor] | None = None
        best: dict[str, Any] = {"epoch": 0, "val_miou": float("-inf")}
        epochs_without_gain = 0
        for epoch in range(1, recipe.epochs + 1):
            epoch_start = time.monotonic()
            losses, out_of_time = self._epoch(loader, epoch, memory_format)
            val_start = time.monotonic()
            evaluated = self.average.model if self.average is not None else self.model
            scores = evaluate_segmenter(evaluated, self.val_set, device=self.device, batch_size=recipe.batch_size)
            self.last_val_seconds = time.monotonic() - val_start
            train_loss = float(sum(losses) / len(losses)) if losses else float("nan")
            if losses and math.isfinite(train_loss):
                self.guard.keep(after_epoch=True)
            measured = {
                "train_loss": train_loss,
                "val_miou": float(scores["miou"]),
                "val_pixel_accuracy": float(scores["pixel_accuracy"]),
                "lr": self.lr,
                "steps": len(losses),
            }
            if scores["miou"] > best["val_miou"] + 1e-6:
                best = {
                    "epoch": epoch,
                    "val_miou": float(scores["miou"]),
                    "val_pixel_accuracy": float(scores["pixel_accuracy"]),
                    "val_per_class_iou": scores["per_class_iou"],
                }
                best_state = {k: v.detach().to("cpu", copy=True) for k, v in evaluated.state_dict().items()}
                epochs_without_gain = 0
            else:
                epochs_without_gain += 1
            history.add(epoch, epoch_start, measured)
            if out_of_time:
                return best_state, best, self.budget.stop_reason(epoch)
            if self.guard.stopped:
                return best_state, best, f"diverged: stopped on the last finite weights at epoch {epoch}"
            if epochs_without_gain >= recipe.patience and epoch < recipe.epochs:
                return (
                    best_state,
                    best,
                    f"no validation mIoU gain for {recipe.patience} epochs (best at epoch {best['epoch']})",
                )
        return best_state, best, None

    def _epoch(self, loader: DataLoader, epoch: int, memory_format: torch.memory_format) -> tuple[list[float], bool]:
        """One epoch of steps; returns the finite step losses and whether the budget ended the epoch."""
        self.model.train()
        losses: list[float] = []
        tick = time.monotonic()
        for index, (images, masks) in enumerate(loader):
            if losses and not self._room_for_another_step():
                return losses, True
            progress = max(self.step / self.total_steps, self.budget.fraction_used())
            self.lr = _learning_rate(self.recipe.lr, progress, self.recipe.warmup_fraction, min_lr_ratio=0.01)
            for group in self.optimizer.param_groups:
                group["lr"] = self.lr
            loss = self.criterion(
                self.model(images.to(self.device, memory_format=memory_format)), masks.to(self.device)
            )
            if not self.guard.step_is_finite(loss, epoch, index):
                if self.guard.stopped:
                    return losses, False
                continue
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            if self.average is not None:
                self.average.update(self.model, self.step)
            losses.append(float(loss.detach()))
            self.step += 1
            this_step, tick = time.monotonic() - tick, time.monotonic()
            self.step_seconds = this_step if self.step == 1 else 0.8 * self.step_seconds + 0.2 * this_step
            self.last_step_seconds = this_step
        return losses, False

    def _room_for_another_step(self) -> bool:
        """Whether one more step and the validation after it still fit the budget.

        Conservative: the next step may be as slow as the slowest recent one (shared machines).
        """
        next_step = max(self.step_seconds, self.last_step_seconds)
        if self.last_val_seconds is not None:
            validation = self.last_val_seconds
        else:
            validation = 0.5 * next_step * max(len(self.val_set) / self.recipe.batch_size, 1)
        return self.budget.leaves_room_for(next_step + validation)
