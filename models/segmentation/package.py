"""Loading a trained segmenter from its package (:mod:`models.packaging`), for :mod:`models.model_kinds`."""

from __future__ import annotations

from pathlib import Path

from models.packaging import ModelPackage, load_model_package
from models.segmentation.builder import SEGMENTER_KIND, segmenter_builder
from models.segmentation.network import AmamUNet


def load_package(directory: str | Path) -> tuple[AmamUNet, None, ModelPackage]:
    """Rebuild a saved segmenter (CPU, eval mode) without fetching pretrained weights: ``(model, None, package)``."""
    model, package = load_model_package(directory, {SEGMENTER_KIND: segmenter_builder}, SEGMENTER_KIND)
    assert isinstance(model, AmamUNet)
    return model, None, package
