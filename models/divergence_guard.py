"""Catch a diverging training run at the step where it happens, and recover from it.

A student that diverges (a loss or features that become NaN or infinite) used to go unnoticed until something
downstream choked on NaN maps, or worse, until a model with NaN outputs was registered. :class:`DivergenceGuard`
checks every step's loss. On a non-finite one it restores the last weights that gave a finite epoch, resets the
optimiser's moments, lowers the learning rate, and records what happened; after ``max_recoveries`` it stops
training on those last finite weights. A run that never had a finite epoch is an error, not a model.
"""

from __future__ import annotations

import copy
import logging
from typing import Any

import torch
from torch import nn

from models.errors import DefectflowError

logger = logging.getLogger(__name__)


class TrainingDivergedError(DefectflowError, RuntimeError):
    """Training produced non-finite values and no finite weights exist to fall back to."""


class DivergenceGuard:
    """Watches the loss of every step; keeps and restores the last finite weights.

    Args:
        modules: The trained modules (their ``state_dict`` is what is kept and restored, buffers included).
        optimiser: Their optimiser (its moments are reset and its learning rate lowered on recovery).
        max_recoveries: Recoveries allowed before training stops on the last finite weights.
        lr_factor: Factor applied to every parameter group's learning rate at each recovery.

    Attributes:
        events: One dict per non-finite step: ``epoch``, ``step``, ``what``, ``lr_before``, ``lr_after``,
            ``action`` (``"restored"`` or ``"stopped"``).
        stopped: Whether training should stop (recoveries exhausted).
    """

    def __init__(
        self,
        modules: list[nn.Module],
        optimiser: torch.optim.Optimizer,
        max_recoveries: int = 3,
        lr_factor: float = 0.5,
    ) -> None:
        self.modules = modules
        self.optimiser = optimiser
        self.max_recoveries = max_recoveries
        self.lr_factor = lr_factor
        self.events: list[dict[str, Any]] = []
        self.stopped = False
        self._finite_state: list[dict[str, torch.Tensor]] | None = None
        self._has_finite_epoch = False
        self.keep()

    def keep(self, after_epoch: bool = False) -> None:
        """Remember the current weights as the last finite ones (call after an epoch whose losses were finite)."""
        self._finite_state = [copy.deepcopy(m.state_dict()) for m in self.modules]
        self._has_finite_epoch = self._has_finite_epoch or after_epoch

    def step_is_finite(self, loss: torch.Tensor, epoch: int, step: int, features: dict[str, Any] | None = None) -> bool:
        """Check one step's loss before ``backward``; on a non-finite loss restore the last finite weights.

        Args:
            loss: The step's loss.
            epoch: Current epoch (1-based), for the record.
            step: Step within the epoch, for the record.
            features: Optional named tensors or tensor lists (e.g. teacher and student features), to say in the
                record which of them were non-finite.

        Returns:
            ``True`` when the loss is finite (go on with ``backward``); ``False`` when it was not and the weights
            were restored (skip this step; check :attr:`stopped`).

        Raises:
            TrainingDivergedError: When the loss was non-finite and no epoch has ever finished with finite losses.
        """
        if bool(torch.isfinite(loss.detach()).all()):
            return True
        what = ["loss"] + [name for name, value in (features or {}).items() if not _all_finite(value)]
        lr_before = [group["lr"] for group in self.optimiser.param_groups]
        if not self._has_finite_epoch and len(self.events) >= self.max_recoveries:
            raise TrainingDivergedError(
                f"training produced a non-finite {', '.join(what)} at epoch {epoch}, step {step}, and at every retry "
                f"with a lower learning rate ({lr_before}); no finite weights to keep. Check the input images for "
                "NaN or constant values, and try a lower learning rate (--lr)."
            )
        self._restore()
        action = "restored"
        if len(self.events) >= self.max_recoveries and self._has_finite_epoch:
            self.stopped = True
            action = "stopped"
        else:
            for group in self.optimiser.param_groups:
                group["lr"] *= self.lr_factor
        event = {
            "epoch": epoch,
            "step": step,
            "what": what,
            "lr_before": lr_before,
            "lr_after": [group["lr"] for group in self.optimiser.param_groups],
            "action": action,
        }
        self.events.append(event)
        logger.warning(
            "non-finite %s at epoch %d step %d: %s the last finite weights%s",
            ", ".join(what),
            epoch,
            step,
            action,
            "" if action == "stopped" else f", learning rate {lr_before} -> {event['lr_after']}",
        )
        return False

    def restore_after_training(self, epoch: int) -> None:
        """Fall back to the last finite weights when the final ones give non-finite outputs (a last step diverged).

        Raises:
            TrainingDivergedError: When no epoch ever finished with finite losses.
        """
        if not self._has_finite_epoch:
            raise TrainingDivergedError(
                "training ended on weights that give non-finite outputs and no epoch finished with finite losses; "
                "nothing usable to keep. Try a lower learning rate (--lr) and check the input images."
            )
        self._restore()
        self.events.append({"epoch": epoch, "step": None, "what": ["outputs after training"], "action": "restored"})
        logger.warning("final weights give non-finite outputs: restored the weights of the last finite epoch")

    def _restore(self) -> None:
        assert self._finite_state is not None
        for module, state in zip(self.modules, self._finite_state, strict=True):
            module.load_state_dict(state)
        self.optimiser.state.clear()  # moments built from the diverging steps would push the same way again

    def summary(self) -> dict[str, Any]:
        """What happened, for the run's record."""
        return {"nonfinite_events": list(self.events), "recoveries": len(self.events), "stopped": self.stopped}


def _all_finite(value: Any) -> bool:
    if isinstance(value, torch.Tensor):
        return bool(torch.isfinite(value.detach()).all())
    if isinstance(value, (list, tuple)):
        return all(_all_finite(v) for v in value)
    return True
