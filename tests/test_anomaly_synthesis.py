"""Synthetic anomalies used to fit the fusion weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models.anomaly_synthesis import AnomalySynthesizer, SynthesisConfig, perlin_mask, perlin_noise


def _normals(count: int = 4, size: int = 64) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    base = torch.linspace(0.2, 0.6, size).view(1, 1, 1, size).expand(count, 3, size, size)
    return (base + 0.05 * torch.rand(count, 3, size, size, generator=generator)).clamp(0, 1)


def test_perlin_noise_shape_range_and_determinism() -> None:
    a = perlin_noise((48, 64), (4, 8), np.random.default_rng(3))
    b = perlin_noise((48, 64), (4, 8), np.random.default_rng(3))
    assert a.shape == (48, 64)
    assert np.array_equal(a, b)
    assert np.abs(a).max() <= 1.5
    mask = perlin_mask((64, 64), np.random.default_rng(0))
    assert 0.002 <= mask.mean() <= 0.25


@pytest.mark.parametrize("perlin_probability", [0.0, 1.0])
def test_anomaly_changes_image_only_inside_mask(perlin_probability: float) -> None:
    images = _normals()
    synthesizer = AnomalySynthesizer(images, SynthesisConfig(perlin_probability=perlin_probability), seed=1)
    for image in images:
        anomalous, mask = synthesizer(image)
        assert anomalous.shape == image.shape and mask.shape == (1, *image.shape[-2:])
        assert set(mask.unique().tolist()) <= {0.0, 1.0}
        assert mask.sum() > 0
        assert float(anomalous.min()) >= 0.0 and float(anomalous.max()) <= 1.0
        outside = mask[0] == 0
        # pixels outside the mask are untouched except those whose change was too small to label
        assert (anomalous - image).abs().mean(dim=0)[outside].max() < 0.02 + 1e-6


def test_synthesis_is_reproducible_and_batches() -> None:
    images = _normals()
    first = AnomalySynthesizer(images, seed=7).batch(images)
    second = AnomalySynthesizer(images, seed=7).batch(images)
    assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])
    assert first[0].shape == images.shape and first[1].shape == (4, 1, 64, 64)


def test_uint8_sources_and_bad_input() -> None:
    images = (_normals() * 255).round().to(torch.uint8)
    anomalous, mask = AnomalySynthesizer(images, seed=0)(images[0])
    assert anomalous.dtype == torch.float32 and mask.sum() > 0
    with pytest.raises(ValueError, match="non-empty"):
        AnomalySynthesizer(torch.zeros(0, 3, 8, 8))
