"""Architecture of the AMAM U-Net: output stride, AMAM paths, gates, shapes, configuration."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from models.backbones import create_feature_extractor
from models.segmentation.amam import AMAM, SeparableDilatedConv, SigmoidSpatialAttention
from models.segmentation.builder import build_segmenter
from models.segmentation.config import SegmenterConfig
from models.segmentation.encoder import ENCODER_OUT_INDICES, DilatedResNetEncoder
from models.segmentation.gate_attention import AttentionGate, SkipProjection

TINY = {"amam_channels": 16, "decoder_channels": (16, 16, 8, 8), "head_channels": 8}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _tiny(**overrides: object) -> SegmenterConfig:
    return SegmenterConfig.small(**{**TINY, **overrides})


@pytest.mark.parametrize("backbone", ["resnet18", "resnet50"])
def test_encoder_output_stride_is_16(backbone: str) -> None:
    model = build_segmenter(_tiny(backbone=backbone))
    features = model.encoder(torch.zeros(1, 3, 96, 128))
    assert [tuple(f.shape[-2:]) for f in features] == [(48, 64), (24, 32), (12, 16), (6, 8), (6, 8)]
    assert model.encoder.reductions == [2, 4, 8, 16, 16]
    dilated = [m.dilation for m in model.encoder.body.layer4.modules() if isinstance(m, nn.Conv2d)]
    assert (2, 2) in dilated  # layer4 is dilated rather than strided


def test_default_resnet50_model_runs_at_512() -> None:
    torch.manual_seed(0)
    config = SegmenterConfig()
    assert config.backbone == "resnet50" and config.dilation_rates == (4, 8, 12, 16)
    model = build_segmenter(config).eval()
    shapes: dict[str, object] = {}
    model.encoder.register_forward_hook(lambda m, i, out: shapes.update(encoder=[tuple(f.shape) for f in out]))
    model.amam.register_forward_hook(lambda m, i, out: shapes.update(amam=tuple(out.shape)))
    with torch.no_grad():
        logits = model(torch.randn(1, 3, 512, 512))
    assert shapes["encoder"] == [
        (1, 64, 256, 256),
        (1, 256, 128, 128),
        (1, 512, 64, 64),
        (1, 1024, 32, 32),
        (1, 2048, 32, 32),
    ]
    assert shapes["amam"] == (1, 256, 32, 32)
    assert tuple(logits.shape) == (1, 2, 512, 512)
    assert torch.isfinite(logits).all()
    assert model.weights_info.source == "random"


def test_any_input_size_gives_logits_of_that_size() -> None:
    model = build_segmenter(_tiny()).eval()
    with torch.no_grad():
        assert tuple(model(torch.randn(2, 3, 50, 77)).shape) == (2, 2, 50, 77)
        assert tuple(model(torch.randn(1, 3, 64, 96)).shape) == (1, 2, 64, 96)


def test_amam_has_six_paths_and_keeps_the_spatial_size() -> None:
    amam = AMAM(32, 8, (4, 8, 12, 16)).eval()
    assert len(amam.paths) == 6
    with torch.no_grad():
        assert tuple(amam(torch.randn(2, 32, 7, 9)).shape) == (2, 8, 7, 9)


def test_separable_paths_have_fewer_parameters_than_plain_dilated_convs() -> None:
    def count(module: nn.Module) -> int:
        return sum(p.numel() for p in module.parameters())

    separable = AMAM(512, 128, (4, 8, 12, 16), separable=True)
    plain = AMAM(512, 128, (4, 8, 12, 16), separable=False)
    sep_dilated = sum(count(p) for p in separable.paths[1:5])
    plain_dilated = sum(count(p) for p in plain.paths[1:5])
    assert sep_dilated < plain_dilated / 3  # the paper's "one third" is an upper bound at these widths
    assert count(separable) < count(plain)
    assert all(isinstance(p, SeparableDilatedConv) for p in separable.paths[1:5])


def test_dilation_rates_are_respected() -> None:
    model = build_segmenter(_tiny(dilation_rates=(2, 4, 6, 8)))
    depthwise = [
        m.dilation
        for path in model.amam.paths[1:-1]
        for m in path.modules()
        if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3)
    ]
    assert depthwise == [(2, 2), (4, 4), (6, 6), (8, 8)]
    assert [p.dilation for p in model.amam.paths[1:-1]] == [2, 4, 6, 8]
    three_rates = build_segmenter(_tiny(dilation_rates=(6, 10, 14)))
    assert len(three_rates.amam.paths) == 5


@pytest.mark.parametrize(("gated", "expected"), [((1, 2, 3), [True, True, True, False]), ((1, 2, 3, 4), [True] * 4)])
def test_gated_levels_choose_which_skips_have_gates(gated: tuple[int, ...], expected: list[bool]) -> None:
    model = build_segmenter(_tiny(gated_levels=gated))
    kinds = [isinstance(model.decoder.stage_for_level(level).skip, AttentionGate) for level in (1, 2, 3, 4)]
    assert kinds == expected
    for level, is_gated in zip((1, 2, 3, 4), expected, strict=True):
        if not is_gated:
            assert isinstance(model.decoder.stage_for_level(level).skip, SkipProjection)


def test_attention_gate_coefficients_are_per_pixel_in_unit_interval() -> None:
    gate = AttentionGate(skip_channels=8, gate_channels=16, inter_channels=4, out_channels=6).eval()
    x, g = torch.randn(2, 8, 12, 12), torch.randn(2, 16, 6, 6)
    with torch.no_grad():
        alpha = gate.coefficients(x, g)
    assert tuple(alpha.shape) == (2, 1, 12, 12)
    assert float(alpha.min()) > 0 and float(alpha.max()) < 1
    assert tuple(gate(x, g).shape) == (2, 6, 12, 12)


def test_self_attention_starts_as_identity_and_uses_sigmoid_affinity() -> None:
    attention = SigmoidSpatialAttention(16)
    x = torch.randn(1, 16, 5, 6)
    assert torch.equal(attention(x), x)  # gamma starts at 0
    with torch.no_grad():
        affinity = attention.affinity(x)
    assert tuple(affinity.shape) == (1, 30, 30)
    assert float(affinity.min()) > 0 and float(affinity.max()) < 1
    with torch.no_grad():
        attention.gamma.fill_(1.0)
    assert not torch.allclose(attention(x), x)


def test_config_round_trip_and_validation() -> None:
    config = SegmenterConfig.small(dilation_rates=(6, 10, 14, 18), gated_levels=(1, 2, 3, 4))
    data = config.to_dict()
    assert data["dilation_rates"] == [6, 10, 14, 18]
    assert SegmenterConfig.from_dict(data) == config
    with pytest.raises(ValueError, match="unknown segmenter config keys"):
        SegmenterConfig.from_dict({**data, "dilation": [1]})
    with pytest.raises(ValueError, match="gated_levels"):
        SegmenterConfig(gated_levels=(0, 5))
    with pytest.raises(ValueError, match="class_names"):
        SegmenterConfig(num_classes=3)
    with pytest.raises(ValueError, match="multiple of 16"):
        SegmenterConfig(input_long_side=500)


def test_builder_accepts_a_dict_and_encoder_rejects_stride_32() -> None:
    model = build_segmenter(_tiny().to_dict(), load_pretrained=False)
    assert "overwritten" in model.weights_info.detail
    body, _ = create_feature_extractor("resnet18", ENCODER_OUT_INDICES, "none")  # output stride 32
    with pytest.raises(ValueError, match="output_stride=16"):
        DilatedResNetEncoder(body)
