"""BatchNorm folding for inference: the folded networks score the same, and only true conv → BatchNorm pairs fold."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

from models.batch_norm_folding import fold_batch_norms
from models.detector.builder import build_detector
from models.detector.config import DetectorConfig
from models.model_kinds import for_inference
from models.segmentation.builder import build_segmenter
from models.segmentation.config import SegmenterConfig

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SMALL_DETECTOR = {"vit_dim": 64, "vit_heads": 4, "vit_depth": 1, "embedding_channels": 128}


def _with_statistics(model: nn.Module) -> nn.Module:
    """Give every BatchNorm statistics and an affine map far from the identity, so a wrong fold shows."""
    generator = torch.Generator().manual_seed(0)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            size = module.num_features
            module.running_mean.copy_(torch.rand(size, generator=generator) - 0.5)
            module.running_var.copy_(torch.rand(size, generator=generator) * 1.5 + 0.5)
            module.weight.data.copy_(torch.rand(size, generator=generator) + 0.5)
            module.bias.data.copy_(torch.rand(size, generator=generator) * 0.4 - 0.2)
    return model.eval()


def _norms(model: nn.Module) -> int:
    return sum(isinstance(module, nn.BatchNorm2d) for module in model.modules())


@pytest.mark.parametrize("backbone", ["resnet18", "mobilenetv2_100"])
def test_folded_detector_gives_the_same_maps(backbone: str) -> None:
    torch.manual_seed(0)
    config = DetectorConfig.for_backbone(backbone, image_size=64, teacher_weights="none", **SMALL_DETECTOR)
    model = _with_statistics(build_detector(config, load_pretrained=False))
    images = torch.randn(2, 3, 64, 64)
    with torch.inference_mode():
        expected_maps, expected_scores = model.score(images)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a fold that disagreed would warn and fold nothing
        folded, pairs = fold_batch_norms(model)
    assert pairs > 0 and _norms(folded) == _norms(model) - pairs
    with torch.inference_mode():
        maps, scores = folded.score(images)
    torch.testing.assert_close(maps, expected_maps, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(scores, expected_scores, rtol=1e-4, atol=1e-5)
    with torch.inference_mode():
        original_maps, _ = model.score(images)
    assert torch.equal(original_maps, expected_maps), "the original must be left as it was"


def test_for_inference_folds_the_segmenter_and_keeps_its_output() -> None:
    torch.manual_seed(0)
    config = SegmenterConfig.small(amam_channels=16, decoder_channels=(16, 16, 8, 8), head_channels=8)
    model = _with_statistics(build_segmenter(config, load_pretrained=False))
    images = torch.randn(1, 3, 96, 128)
    with torch.inference_mode():
        expected = model(images)
    served = for_inference(model)
    assert _norms(served) < _norms(model)
    with torch.inference_mode():
        torch.testing.assert_close(served(images), expected, rtol=1e-4, atol=1e-5)


class _RawOutputReadTwice(nn.Module):
    """The convolution's raw output feeds the BatchNorm and a shortcut: folding would change the shortcut."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)
        self.norm = nn.BatchNorm2d(3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raw = self.conv(x)
        return self.norm(raw) + raw


class _ActivationInPlaceBetween(nn.Module):
    """conv → in-place ReLU → BatchNorm: the BatchNorm gets the conv's tensor object, but changed."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)
        self.act = nn.ReLU(inplace=True)
        self.norm = nn.BatchNorm2d(3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.act(self.conv(x)))


def test_a_fold_that_would_change_the_output_is_refused() -> None:
    model = _with_statistics(_RawOutputReadTwice())
    with pytest.warns(UserWarning, match="changed _RawOutputReadTwice's output"):
        folded, pairs = fold_batch_norms(model)
    assert folded is model and pairs == 0 and isinstance(model.norm, nn.BatchNorm2d)


def test_a_batch_norm_after_an_in_place_activation_is_not_folded() -> None:
    model = _with_statistics(_ActivationInPlaceBetween())
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # not paired at all, rather than paired and then refused
        folded, pairs = fold_batch_norms(model)
    assert folded is model and pairs == 0


def test_folding_needs_eval_mode() -> None:
    with pytest.raises(ValueError, match="eval mode"):
        fold_batch_norms(_ActivationInPlaceBetween().train())
