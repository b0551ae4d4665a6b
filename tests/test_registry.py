"""The registry tells an absent model from an unreadable registry (issue #12)."""

from __future__ import annotations

from pathlib import Path

import pytest

from storage.registry import CHAMPION, RegistryUnavailable, alias_version, list_versions
from storage.settings import load_settings


def test_an_absent_model_is_none_and_a_damaged_registry_is_an_error_that_says_so(tmp_path: Path) -> None:
    settings = load_settings(tmp_path / "fresh").ensure()
    assert alias_version(settings, "detector", CHAMPION) is None  # nothing registered yet: absent, not an error

    damaged = load_settings(tmp_path / "damaged").ensure()
    database = Path(damaged.tracking_uri.removeprefix("sqlite:///"))
    database.write_bytes(b"this is not an sqlite database" * 100)
    with pytest.raises(RegistryUnavailable, match="could not read detector@champion from the MLflow registry"):
        alias_version(damaged, "detector", CHAMPION)


def test_listing_versions_of_an_unreadable_registry_is_an_error_not_an_empty_list(tmp_path: Path) -> None:
    settings = load_settings(tmp_path / "fresh").ensure()
    assert list_versions(settings, "detector") == []  # nothing registered: an empty list

    damaged = load_settings(tmp_path / "damaged").ensure()
    Path(damaged.tracking_uri.removeprefix("sqlite:///")).write_bytes(b"this is not an sqlite database" * 100)
    with pytest.raises(RegistryUnavailable, match="could not read detector from the MLflow registry"):
        list_versions(damaged, "detector")


def test_model_kinds_load_by_name_and_an_unknown_kind_says_how_to_add_one(tmp_path: Path) -> None:
    from models.detector.builder import build_detector
    from models.detector.config import DetectorConfig
    from models.detector.package import save_detector
    from models.model_kinds import AnomalyDetector, load_model

    config = DetectorConfig.small(image_size=64, vit_dim=32, vit_heads=2, vit_depth=1, embedding_channels=64)
    save_detector(tmp_path / "pkg", build_detector(config), None)
    model, calibration, package = load_model("detector", tmp_path / "pkg")
    assert isinstance(model, AnomalyDetector) and model.input_size == 64
    assert calibration is None and package.kind == "detector"
    with pytest.raises(ValueError, match="unknown model kind 'patchcore'; known kinds: detector, segmenter"):
        load_model("patchcore", tmp_path / "pkg")
