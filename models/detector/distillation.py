"""The distillation phase of detector training: bottleneck and student learn the frozen teacher's features.

RD4AD's recipe: Adam on the cosine distillation loss over shuffled batches of training images, for a number of
epochs or until the time budget runs out. Non-finite steps are caught by a :class:`DivergenceGuard`, which
restores the last finite weights; a model whose outputs stay non-finite is refused.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch

from models.detector.data import uint8_to_input
from models.detector.loss import ReverseDistillationLoss
from models.detector.network import ReverseDistillation
from models.detector.recipes import DetectorRecipe
from models.divergence_guard import DivergenceGuard, TrainingDivergedError
from models.training_run import EpochCallback, EpochHistory, TimeBudget

# Same logger as models.detector.training: the epoch log lines are part of one training run.
logger = logging.getLogger("models.detector.training")


def image_batches(images: torch.Tensor, batch_size: int, device: torch.device) -> Iterator[torch.Tensor]:
    """Model-ready input batches of uint8 ``images``, in order, on ``device``."""
    for start in range(0, len(images), batch_size):
        yield uint8_to_input(images[start : start + batch_size]).to(device)


@torch.no_grad()
def mean_loss(model: ReverseDistillation, images: torch.Tensor, batch_size: int, device: torch.device) -> float:
    """Mean distillation loss over ``images`` in eval mode (validation loss, and the finiteness check)."""
    model.eval()
    criterion = ReverseDistillationLoss()
    total = 0.0
    for batch in image_batches(images, batch_size, device):
        teacher_features, student_features = model(batch)
        total += float(criterion(teacher_features, student_features)) * len(batch)
    return total / max(len(images), 1)


@dataclass
class Distiller:
    """What one distillation step needs: the model, its optimiser and loss, the divergence guard and budget."""

    model: ReverseDistillation
    optimiser: torch.optim.Optimizer
    criterion: ReverseDistillationLoss
    guard: DivergenceGuard
    budget: TimeBudget
    batch_size: int
    device: torch.device

    def train_epoch(self, train_images: torch.Tensor, order: torch.Tensor, epoch: int) -> tuple[float, int, bool]:
        """One pass over ``order`` in batches, skipping non-finite steps the guard catches.

        Returns:
            (summed loss weighted by batch size, images seen, whether the time budget ran out).
        """
        model, batch_size = self.model, self.batch_size
        model.train()
        running, seen = 0.0, 0
        for start in range(0, len(order), batch_size):
            ids = order[start : start + batch_size]
            if len(ids) < 2:  # BatchNorm cannot train on a single image
                continue
            teacher_features, student_features = model(uint8_to_input(train_images[ids]).to(self.device))
            loss = self.criterion(teacher_features, student_features)
            features = {"teacher features": teacher_features, "student features": student_features}
            if not self.guard.step_is_finite(loss, epoch, start // batch_size, features):
                if self.guard.stopped:
                    break
                continue
            self.optimiser.zero_grad(set_to_none=True)
            loss.backward()
            self.optimiser.step()
            running += float(loss.detach()) * len(ids)
            seen += len(ids)
            if self.budget.exceeded():
                return running, seen, True
        return running, seen, False

    def measure(self, epoch: int, running: float, seen: int, val_images: torch.Tensor) -> dict[str, Any]:
        """The epoch's history entry (loss, validation loss, non-finite steps); keeps weights that ended finite."""
        guard = self.guard
        measured: dict[str, Any] = {"loss": running / max(seen, 1)}
        if len(val_images):
            measured["val_loss"] = mean_loss(self.model, val_images, self.batch_size, self.device)
        if guard.events and guard.events[-1]["epoch"] == epoch:
            measured["nonfinite_steps"] = sum(1 for event in guard.events if event["epoch"] == epoch)
        if seen and math.isfinite(measured["loss"]) and math.isfinite(measured.get("val_loss", 0.0)):
            guard.keep(after_epoch=True)
        return measured

    def ensure_finite(self, check_images: torch.Tensor, epochs: int) -> None:
        """Fall back to the last finite weights if the trained model's loss is not finite.

        Raises:
            TrainingDivergedError: When even the last finite weights give non-finite outputs.
        """
        if math.isfinite(mean_loss(self.model, check_images, self.batch_size, self.device)):
            return
        self.guard.restore_after_training(epochs)
        if not math.isfinite(mean_loss(self.model, check_images, self.batch_size, self.device)):
            raise TrainingDivergedError(
                f"the detector gives non-finite outputs even on its last finite weights ({self.guard.summary()}); "
                "it is not registered. Retrain with a lower learning rate (--lr)."
            )


def distil(
    model: ReverseDistillation,
    train_images: torch.Tensor,
    val_images: torch.Tensor,
    recipe: DetectorRecipe,
    seed: int,
    budget: TimeBudget,
    on_epoch: EpochCallback | None,
) -> tuple[list[dict[str, Any]], bool, DivergenceGuard]:
    """The distillation phase: bottleneck and student learn the teacher's features under the cosine loss.

    Returns:
        The epoch history, whether the budget ended it, and the divergence guard (its record and last finite
        weights). The model ends on finite weights, or :class:`TrainingDivergedError` is raised.
    """
    device = next(model.parameters()).device
    optimiser = torch.optim.Adam(model.trainable_parameters(), lr=recipe.lr, betas=recipe.betas)
    guard = DivergenceGuard([model.bottleneck, model.student], optimiser)
    distiller = Distiller(model, optimiser, ReverseDistillationLoss(), guard, budget, recipe.batch_size, device)
    generator = torch.Generator().manual_seed(seed)
    history = EpochHistory(logger, budget, on_epoch)
    stopped_by_time = False
    for epoch in range(1, recipe.epochs + 1):
        epoch_start = time.monotonic()
        order = torch.randperm(len(train_images), generator=generator)
        running, seen, stopped_by_time = distiller.train_epoch(train_images, order, epoch)
        history.add(epoch, epoch_start, distiller.measure(epoch, running, seen, val_images))
        if stopped_by_time:
            logger.info("detector training stopped: %s", budget.stop_reason(epoch))
            break
        if guard.stopped:
            logger.warning("detector training stopped at epoch %d on the last finite weights (diverged)", epoch)
            break
    distiller.ensure_finite(val_images if len(val_images) else train_images[: recipe.batch_size], len(history))
    return history.entries, stopped_by_time, guard
