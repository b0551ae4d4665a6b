"""Training that diverges is caught at the step, recovered from, recorded, and never yields a NaN model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from models.detector.config import DetectorConfig
from models.detector.training import train_detector
from models.divergence_guard import DivergenceGuard, TrainingDivergedError
from tests.threads import one_torch_thread
from tests.toy_data import make_toy_dataset

TINY = {"vit_dim": 32, "vit_heads": 2, "vit_depth": 1, "embedding_channels": 64, "student_widths": (48, 32, 16)}


@pytest.fixture(scope="module")
def toy_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_toy_dataset(tmp_path_factory.mktemp("toy"), n_train=16, n_test_good=4, n_test_defect=4, size=64)


def _poison_after_epoch(target_epoch: int, model_ref: dict) -> object:
    """An ``on_epoch`` callback that turns one student weight to NaN after ``target_epoch`` (a diverged step)."""

    def callback(entry: dict) -> None:
        if entry["epoch"] == target_epoch:
            with torch.no_grad():
                next(model_ref["model"].student.parameters()).fill_(float("nan"))

    return callback


def test_divergence_mid_training_is_recovered_and_recorded(toy_root: Path, monkeypatch) -> None:
    import models.detector.training as training

    built: dict = {}
    real_build = training.build_detector

    def build_and_remember(config):  # the test needs the model to poison it; training itself is untouched
        built["model"] = real_build(config)
        return built["model"]

    monkeypatch.setattr(training, "build_detector", build_and_remember)
    with one_torch_thread():
        result = train_detector(
            DetectorConfig.small(image_size=64, **TINY),
            toy_root,
            epochs=4,
            batch_size=8,
            lr=0.001,
            val_fraction=0.25,
            fusion_images=8,
            on_epoch=_poison_after_epoch(2, built),
        )
    events = result.divergence["nonfinite_events"]
    assert events and events[0]["epoch"] == 3 and events[0]["step"] == 0 and events[0]["action"] == "restored"
    assert "loss" in events[0]["what"] and "student features" in events[0]["what"]
    assert events[0]["lr_after"][0] == pytest.approx(events[0]["lr_before"][0] / 2)
    assert result.history[2]["nonfinite_steps"] >= 1
    assert all(np.isfinite(e["loss"]) and np.isfinite(e["val_loss"]) for e in result.history)
    assert all(torch.isfinite(p).all() for p in result.model.parameters())
    assert np.isfinite(result.calibration.image_threshold)
    assert result.package_extra()["training"]["divergence"]["recoveries"] == len(events)


def test_guard_stops_on_last_finite_weights_and_refuses_a_run_that_was_never_finite() -> None:
    layer = nn.Linear(2, 2)
    optimiser = torch.optim.Adam(layer.parameters(), lr=0.1)
    guard = DivergenceGuard([layer], optimiser, max_recoveries=2)
    nan = torch.tensor(float("nan"))
    assert not guard.step_is_finite(nan, epoch=1, step=0)
    assert not guard.step_is_finite(nan, epoch=1, step=1)
    with pytest.raises(TrainingDivergedError, match="no finite weights"):
        guard.step_is_finite(nan, epoch=1, step=2)

    guard = DivergenceGuard([layer], optimiser, max_recoveries=1)
    kept = layer.weight.detach().clone()
    guard.keep(after_epoch=True)
    with torch.no_grad():
        layer.weight.fill_(float("inf"))
    assert not guard.step_is_finite(nan, epoch=2, step=0) and not guard.stopped
    assert not guard.step_is_finite(nan, epoch=2, step=1) and guard.stopped
    assert torch.equal(layer.weight, kept)
    assert [e["action"] for e in guard.events] == ["restored", "stopped"]
