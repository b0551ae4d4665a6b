"""Measured training recipes per encoder family for the AMAM U-Net: architecture and training settings in one place.

The CLI, the flows, the tasks and ``prefect.yaml`` leave a setting unset to take the recipe's; the figures behind
each recipe are in docs/segmenter.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from models.recipes import Recipe, find_recipe
from models.segmentation.config import SMALL_ARCHITECTURE, SegmenterConfig


@dataclass(frozen=True, kw_only=True)
class SegmenterRecipe(Recipe):
    """How to build and train the segmenter for one encoder family (``architecture``: :class:`SegmenterConfig`
    fields other than the backbone, its weights and the input size).

    Attributes:
        image_size: Training, validation and inference long side in pixels.
        epochs: Maximum number of epochs.
        batch_size: Samples per step; batches are always full (samples repeat when there are fewer), because the
            AMAM's pooling path has BatchNorm on a 1x1 map.
        lr: Peak AdamW learning rate.
        weight_decay: AdamW weight decay.
        val_fraction: Fraction of frames held out for validation.
        patience: Stop after this many epochs without a better validation mIoU.
        min_steps_per_epoch: An epoch has at least this many steps, so that a small labelled set still trains
            between two validations.
        warmup_fraction: Fraction of the run spent warming the learning rate up (then cosine decay).
        channels_last: Train in the channels-last memory layout (faster convolutions on CPU, the same network).
        ema_decay: Validate and keep an exponential moving average of the weights with this decay; ``None``
            validates the raw weights (in our 5-minute runs the average's lag cost more than it gained).
    """

    image_size: int = 512
    epochs: int = 30
    batch_size: int = 8
    lr: float = 2e-3
    weight_decay: float = 1e-4
    val_fraction: float = 0.2
    patience: int = 8
    min_steps_per_epoch: int = 10
    warmup_fraction: float = 0.05
    channels_last: bool = True
    ema_decay: float | None = None

    def config(self, backbone: str, encoder_weights: str = "none", **overrides: Any) -> SegmenterConfig:
        """The architecture for ``backbone`` at this recipe's image size (``overrides``: any config field)."""
        fields = {**self.architecture, "backbone": backbone, "input_long_side": self.image_size}
        return SegmenterConfig(**{**fields, "encoder_weights": encoder_weights, **overrides})


#: ResNet18: the CPU-sized configuration, measured at 256 px (docs/segmenter.md).
SMALL = SegmenterRecipe(
    family="small-resnet",
    pattern=r"resnet18(\.|$)",
    architecture={k: v for k, v in SMALL_ARCHITECTURE.items() if k not in ("backbone", "input_long_side")},
    image_size=SMALL_ARCHITECTURE["input_long_side"],
    examples=("resnet18",),
)

#: The paper's encoders (ResNet50 and the other ResNets) with its sizes and 512 px frames.
PAPER = SegmenterRecipe(
    family="resnet",
    pattern=r"(resnet\d+|wide_resnet\d+_\d+|resnext\d+)",
    image_size=512,
    examples=("resnet50", "resnet34", "resnet101"),
)

RECIPES: tuple[SegmenterRecipe, ...] = (SMALL, PAPER)

#: The paper's encoder, the default of every command that trains a segmenter.
DEFAULT_BACKBONE = "resnet50"


def recipe_for(backbone: str) -> SegmenterRecipe:
    """The recipe of ``backbone``'s family.

    Raises:
        ValueError: When no family matches; the message lists the supported ones.
    """
    return find_recipe(
        RECIPES, backbone, "segmenter", "The AMAM U-Net's encoder is a timm ResNet built with output stride 16."
    )


def training_recipe(backbone: str) -> SegmenterRecipe:
    """The training settings for ``backbone``: its family's recipe, the paper's for a hand-built config."""
    return next((recipe for recipe in RECIPES if recipe.matches(backbone)), PAPER)
