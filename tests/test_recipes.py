"""One recipe per backbone family for each model: defaults come from it, runs record it whole (issue #12)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from models.detector.recipes import recipe_for as detector_recipe
from models.segmentation.config import SegmenterConfig
from models.segmentation.recipes import PAPER, SMALL
from models.segmentation.recipes import recipe_for as segmenter_recipe
from models.segmentation.training import train_segmenter
from models.training_run import TimeBudget
from tests.test_segmenter_training import TINY, make_shapes_dataset


def test_segmenter_recipes_by_family_and_a_clear_error_for_others() -> None:
    assert segmenter_recipe("resnet18") is SMALL and segmenter_recipe("resnet50") is PAPER
    assert segmenter_recipe("resnet18").config("resnet18") == SegmenterConfig.small()
    assert segmenter_recipe("resnet50").config("resnet50").input_long_side == 512
    with pytest.raises(ValueError, match=r"no segmenter recipe for backbone 'mobilenetv2_100'.*resnet50"):
        segmenter_recipe("mobilenetv2_100")


def test_overrides_replace_settings_none_keeps_the_recipe_and_typos_are_refused() -> None:
    recipe = detector_recipe("resnet18").with_overrides(epochs=3, lr=None)
    assert recipe.epochs == 3 and recipe.lr == detector_recipe("resnet18").lr
    with pytest.raises(ValueError, match="epoch: not training settings"):
        recipe.with_overrides(epoch=3)
    params = recipe.to_params()
    assert params["recipe_family"] == "small-resnet" and params["recipe_epochs"] == 3
    assert params["recipe_betas"] == [0.5, 0.999]


def test_time_budget_refuses_a_non_positive_budget() -> None:
    with pytest.raises(ValueError, match="max_minutes must be positive"):
        TimeBudget(0)
    assert not TimeBudget(None).exceeded() and TimeBudget(None).leaves_room_for(1e9)


def test_segmenter_trains_at_its_config_size_and_recovers_from_a_diverged_step(
    tmp_path: Path, one_torch_thread: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    import models.segmentation.training as training

    built: dict = {}
    real_build = training.build_segmenter

    def build_and_remember(config):  # the test needs the model to poison it; training itself is untouched
        built["model"] = real_build(config)
        return built["model"]

    def poison_after_first_epoch(entry: dict) -> None:
        if entry["epoch"] == 1:
            with torch.no_grad():
                next(built["model"].parameters()).fill_(float("nan"))

    monkeypatch.setattr(training, "build_segmenter", build_and_remember)
    data = make_shapes_dataset(tmp_path / "shapes", count=8)
    result = train_segmenter(
        SegmenterConfig.small(**TINY), data, epochs=3, batch_size=4, min_steps_per_epoch=2,
        on_epoch=poison_after_first_epoch,
    )  # fmt: skip
    assert result.recipe["image_size"] == TINY["input_long_side"]  # the config's size, no mismatch
    assert result.recipe["recipe_family"] == "small-resnet"
    assert [entry["epoch"] for entry in result.history] == [1, 2, 3]
    assert all(torch.isfinite(p).all() for p in result.model.parameters())
    assert result.divergence["recoveries"] == 1 and result.divergence["nonfinite_events"][0]["epoch"] == 2
    assert [entry["steps"] for entry in result.history] == [2, 1, 2]  # the poisoned step was skipped, not taken
