"""Thresholds, normalisation and model packages with calibration."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models.detector.builder import DETECTOR_KIND, build_detector, detector_builder
from models.detector.calibration import Calibration, calibrate, normal_threshold
from models.detector.config import DetectorConfig
from models.detector.package import load_detector, save_detector
from models.packaging import load_model_package, read_model_package


def _normal_only() -> Calibration:
    rng = np.random.default_rng(0)
    scores = rng.normal(1.0, 0.1, size=50)
    maps = rng.random((50, 8, 8)).astype(np.float32) * scores[:, None, None]
    return calibrate(scores, maps)


def test_normal_rule_is_quantile_plus_margin() -> None:
    scores = np.arange(101, dtype=float)  # q99 = 99, median = 50
    assert normal_threshold(scores) == pytest.approx(99 + 0.1 * 49)
    calibration = calibrate(scores, np.zeros((101, 4, 4)))
    assert calibration.method == "normal-quantile"
    assert calibration.pixel_threshold == calibration.image_threshold


def test_threshold_maps_to_half_and_normalisation_is_monotone() -> None:
    calibration = _normal_only()
    assert calibration.normalise_image(calibration.image_threshold) == pytest.approx(0.5)
    assert calibration.normalise_pixels(calibration.pixel_threshold) == pytest.approx(0.5)
    raw = np.linspace(-5, 5, 1001)
    for normalise in (calibration.normalise_image, calibration.normalise_pixels):
        values = normalise(raw)
        assert np.all(np.diff(values) >= 0) and values.min() >= 0 and values.max() <= 1
        assert np.all((values >= 0.5) == (raw >= (calibration.image_threshold)))
    tensor = calibration.normalise_image(torch.tensor([calibration.image_threshold, 1e9]))
    assert torch.allclose(tensor, torch.tensor([0.5, 1.0], dtype=tensor.dtype))
    assert calibration.is_anomalous(calibration.image_threshold) and not calibration.is_anomalous(-1.0)


def test_normalisation_keeps_the_ranking_of_every_calibration_value() -> None:
    # the threshold at the top of the range, as the normal-only rule puts it: nothing in [min, max] may clip to 0
    calibration = Calibration(
        image_threshold=1.0,
        pixel_threshold=1.0,
        image_min=0.2,
        image_max=1.05,
        pixel_min=0.0,
        pixel_max=1.1,
        method="normal-quantile",
    )
    pixels = np.linspace(calibration.pixel_min, calibration.pixel_max, 101)
    normalised = calibration.normalise_pixels(pixels)
    assert np.all(np.diff(normalised) > 0) and normalised[0] == pytest.approx(0.0)
    scores = calibration.normalise_image(np.linspace(calibration.image_min, calibration.image_max, 101))
    assert np.all(np.diff(scores) > 0)
    assert calibration.normalise_image(1.0) == pytest.approx(0.5)


def test_f1_calibration_with_labelled_defects() -> None:
    normal_scores = np.array([0.1, 0.2, 0.3, 0.35])
    normal_maps = np.zeros((4, 4, 4), dtype=np.float32) + normal_scores[:, None, None].astype(np.float32)
    defect_masks = np.zeros((3, 4, 4), dtype=bool)
    defect_masks[:, :2, :2] = True
    defect_maps = np.where(defect_masks, 0.9, 0.1).astype(np.float32)
    calibration = calibrate(normal_scores, normal_maps, np.array([0.9, 0.8, 0.4]), defect_maps, defect_masks)
    assert calibration.method == "f1"
    assert calibration.image_threshold == pytest.approx(0.4)  # all three defects above, no normal image
    assert calibration.pixel_threshold == pytest.approx(0.9)
    assert calibration.details["image_f1"] == pytest.approx(1.0)


def test_calibration_round_trip_and_missing_keys() -> None:
    calibration = _normal_only()
    assert Calibration.from_dict(calibration.to_dict()) == calibration
    with pytest.raises(ValueError, match="recalibrate"):
        Calibration.from_dict({"image_threshold": 1.0})


def test_package_round_trip_gives_identical_maps_and_calibration(tmp_path) -> None:
    torch.manual_seed(0)
    config = DetectorConfig.small(image_size=64, vit_dim=64, vit_heads=4, vit_depth=1, embedding_channels=128)
    model = build_detector(config)
    model.teacher.fit_standardisation([torch.randn(4, 3, 64, 64)])
    with torch.no_grad():
        model.anomaly_map_generator.fusion.weight.copy_(torch.tensor([0.5, 0.3, 0.2]).view(1, 3, 1, 1))
    model.eval()
    calibration = _normal_only()
    save_detector(tmp_path / "pkg", model, calibration, {"training": {"epochs_completed": 1}})
    assert read_model_package(tmp_path / "pkg").kind == DETECTOR_KIND

    loaded, loaded_calibration, package = load_detector(tmp_path / "pkg")
    assert loaded_calibration == calibration
    assert package.extra["training"]["epochs_completed"] == 1
    assert loaded.weights_info.source == "package"
    images = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(model.anomaly_map(images), loaded.anomaly_map(images))
    # the plain packaging API with the builder (no pretrained weights fetched) works too
    again, _ = load_model_package(tmp_path / "pkg", {DETECTOR_KIND: detector_builder}, DETECTOR_KIND)
    with torch.no_grad():
        assert torch.equal(model.anomaly_map(images), again.anomaly_map(images))
    assert build_detector(config.to_dict(), load_pretrained=False).config == config


def test_the_fusion_fit_stays_finite_when_its_scale_runs_away() -> None:
    """An unbounded scale overflowed to inf in an L-BFGS line search; the cross-entropy at a target of 1 was then
    NaN and every fitted weight with it (a rare CI failure). The scale is bounded now."""
    from models.detector.map_weights_fit import _balanced_bce, _logits

    features = torch.tensor([[0.2, 0.4], [0.9, 0.8], [0.1, 0.3], [0.95, 0.7]])
    targets = torch.tensor([0.0, 1.0, 0.0, 1.0])
    logits = _logits(features, torch.tensor([0.5, 0.5]), torch.tensor(1000.0), torch.tensor(0.5))
    assert torch.isfinite(logits).all()
    assert torch.isfinite(_balanced_bce(logits, targets))
