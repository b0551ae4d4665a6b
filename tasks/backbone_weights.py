"""Resolve a command's weights request against the workspace settings (``models.weight_sources`` does the rule)."""

from __future__ import annotations

from models.detector.config import TEACHER_STRIDES
from models.weight_sources import RANDOM_INIT, TIMM_PRETRAINED, WeightSettings, resolve_weights
from storage.settings import (
    ENCODER_WEIGHTS_SETTING,
    TEACHER_WEIGHTS_SETTING,
    WEIGHTS_DIR_SETTING,
    Settings,
)

#: Roles of pretrained backbones: the detector's teacher and the segmenter's encoder.
TEACHER = "teacher"
ENCODER = "encoder"


def weight_settings(settings: Settings, role: str) -> WeightSettings:
    """The file and folder settings that apply to ``role`` (``"teacher"`` or ``"encoder"``)."""
    if role == TEACHER:
        return WeightSettings(
            settings.teacher_weights, TEACHER_WEIGHTS_SETTING, settings.weights_dir, WEIGHTS_DIR_SETTING
        )
    if role == ENCODER:
        return WeightSettings(
            settings.encoder_weights, ENCODER_WEIGHTS_SETTING, settings.weights_dir, WEIGHTS_DIR_SETTING
        )
    raise ValueError(f"unknown backbone role {role!r}; use 'teacher' or 'encoder'")


def resolve_backbone_weights(settings: Settings, role: str, backbone: str, requested: str | None) -> str:
    """The concrete weights source (file path, ``"timm"`` or ``"none"``) for ``requested`` in this workspace.

    Raises:
        models.weight_sources.WeightsUnavailableError: When nothing can deliver; the message lists the ways out.
    """
    return resolve_weights(requested, backbone, role, weight_settings(settings, role))


def check_weights_fit(role: str, backbone: str, resolved: str) -> None:
    """Load a weights file into the backbone it is meant for, so a wrong or damaged file fails before training.

    Raises:
        ValueError: When the file is not a state dict of ``backbone`` (the message names the file).
    """
    if resolved in (RANDOM_INIT, TIMM_PRETRAINED):
        return
    from models.backbones import create_feature_extractor, feature_levels

    if role == TEACHER:
        create_feature_extractor(backbone, feature_levels(backbone, TEACHER_STRIDES), resolved)
    else:
        from models.segmentation.encoder import build_encoder

        build_encoder(backbone, resolved)
