"""Measured training recipes per teacher family: architecture sizes and training settings in one place.

A recipe matches the bottleneck, ViT and student to the teacher's channels (a 96-channel MobileNet level does not
need the WideResNet50 sizes) and says how to train it (image size, learning rate, epochs, batch size). The CLI,
the flows, the tasks and ``prefect.yaml`` take their defaults from here; the figures behind each recipe are in
docs/detector.md ("Recipes").
"""

from __future__ import annotations

from dataclasses import dataclass

from models.recipes import Recipe, find_recipe


@dataclass(frozen=True, kw_only=True)
class DetectorRecipe(Recipe):
    """How to build and train the detector for one teacher family (``architecture``: :class:`DetectorConfig`
    fields other than the backbone and its weights).

    Attributes:
        image_size: Side of the square network input.
        lr: Adam learning rate.
        betas: Adam betas (RD4AD's (0.5, 0.999)).
        epochs: Epochs to train (the time budget, where one is set, may stop training earlier).
        batch_size: Images per step.
        val_fraction: Share of ``train/good`` held out for the validation loss and the threshold calibration.
        fusion_images: Synthetic anomalies drawn to fit the anomaly-map fusion weights.
    """

    image_size: int = 256
    lr: float = 0.005
    betas: tuple[float, float] = (0.5, 0.999)
    epochs: int = 200
    batch_size: int = 16
    val_fraction: float = 0.15
    fusion_images: int = 64


#: Small ResNets with random or pretrained weights: the CPU-sized configuration (docs/detector.md, "Tuning").
#: The ViT, embedding and student are the light sizes (ViT 128, embedding 256, student 128/64/32): at 256 px they
#: score 1.5-1.9x faster than the earlier 256 / 512 / teacher-width sizes, the student having cost more than the
#: teacher, at equal quality in equal training time (docs/detector.md, "Light small-resnet sizes").
SMALL_RESNET = DetectorRecipe(
    family="small-resnet",
    pattern=r"(resnet18|resnet34)(\.|$)",
    architecture={
        "feature_standardisation": True,
        "vit_dim": 128,
        "vit_depth": 2,
        "vit_heads": 4,
        "embedding_channels": 256,
        "student_widths": (128, 64, 32),
        "student_blocks": (1, 1, 1),
    },
    image_size=128,
    lr=0.001,
    examples=("resnet18", "resnet34"),
)

#: The paper's and RD4AD's teacher family: WideResNet50 and the deeper ResNets, with the paper's sizes.
WIDE_RESNET = DetectorRecipe(
    family="resnet",
    pattern=r"(wide_resnet\d+_\d+|resnet50|resnet101|resnet152|resnext\d+)",
    image_size=256,
    lr=0.005,
    examples=("wide_resnet50_2", "resnet50"),
)

#: Inverted-residual networks (MobileNet V2/V3, EfficientNet): their block outputs are thin (24, 32, 96 channels
#: for mobilenetv2_100), so the teacher is tapped at the expanded activations (144, 192, 576) and the bottleneck
#: and student are sized to those, far below the paper's WideResNet50 sizes; the three level maps are averaged
#: (the fitted fusion weighed the stride-4 level up and lost image AUROC on real parts). Batches of 4: on a CPU an
#: image costs the same in any batch, so smaller batches give four times the optimiser steps per minute, which
#: lifted image AUROC on every set measured at equal time (RD4AD's 16 suits a GPU). The fusion brings the two
#: shallow levels to 96 channels rather than the deepest level's 576 (OCBE's width): 1.1-1.2x the images/s at equal
#: quality on the real tiles. The recommended CPU teacher.
#: Measurements behind each choice: docs/detector.md, "Recipes".
MOBILE = DetectorRecipe(
    family="mobile",
    pattern=r"(tf_)?(mobilenetv2|mobilenetv3|efficientnet|mixnet|mnasnet)",
    architecture={
        "teacher_features": "expansion",
        "fusion_channels": 192,
        "fusion_align_channels": 96,
        "vit_dim": 128,
        "vit_depth": 2,
        "vit_heads": 4,
        "embedding_channels": 384,
        "student_widths": (128, 64, 48),
        "student_blocks": (1, 1, 1),
        "fusion_weights": (1.0, 1.0, 1.0),
    },
    image_size=256,
    lr=0.005,
    epochs=20,
    batch_size=4,
    examples=("mobilenetv2_100", "mobilenetv3_large_100", "efficientnet_b0"),
)

RECIPES: tuple[DetectorRecipe, ...] = (SMALL_RESNET, WIDE_RESNET, MOBILE)

#: The recommended teacher on a CPU (docs/detector.md): ImageNet features at a fraction of WideResNet50's cost.
RECOMMENDED_BACKBONE = "mobilenetv2_100"


#: What a hand-built :class:`DetectorConfig` on another timm CNN trains with: RD4AD's settings.
GENERIC = DetectorRecipe(family="custom", pattern=r"$^")


def recipe_for(backbone: str) -> DetectorRecipe:
    """The recipe of ``backbone``'s family.

    Raises:
        ValueError: When no family matches; the message lists the supported ones.
    """
    return find_recipe(
        RECIPES,
        backbone,
        "detector",
        "Pass one of those, or build a DetectorConfig by hand for another timm CNN with features at strides 4, 8 "
        "and 16.",
    )


def training_recipe(backbone: str) -> DetectorRecipe:
    """The training settings for ``backbone``: its family's recipe, RD4AD's settings for a hand-built config."""
    return next((recipe for recipe in RECIPES if recipe.matches(backbone)), GENERIC)
