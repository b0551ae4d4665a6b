"""Segmenter weights: model-package round trip and encoder weights from a local file."""

from __future__ import annotations

from pathlib import Path

import pytest
import timm
import torch

from models.packaging import DamagedWeights, load_model_package, save_model_package
from models.segmentation.builder import SEGMENTER_KIND, build_segmenter, segmenter_builder
from models.segmentation.config import SegmenterConfig

TINY = {"amam_channels": 16, "decoder_channels": (16, 16, 8, 8), "head_channels": 8}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_package_round_trip_gives_identical_outputs(tmp_path: Path) -> None:
    torch.manual_seed(0)
    config = SegmenterConfig.small(**TINY, dilation_rates=(2, 4, 6, 8))
    model = build_segmenter(config)
    # Move BatchNorm statistics and the attention gamma away from their initial values.
    model.train()
    with torch.no_grad():
        for _ in range(2):
            model(torch.randn(2, 3, 64, 64))
        model.amam.attention.gamma.fill_(0.5)
    model.eval()
    save_model_package(tmp_path / "seg", SEGMENTER_KIND, config.to_dict(), model, extra={"val_miou": 0.9})

    loaded, package = load_model_package(tmp_path / "seg", {SEGMENTER_KIND: segmenter_builder}, SEGMENTER_KIND)
    assert package.kind == SEGMENTER_KIND
    assert SegmenterConfig.from_dict(package.config) == config
    assert loaded.weights_info.source == "random" and "package" in loaded.weights_info.detail
    x = torch.randn(1, 3, 64, 80)
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))


def test_encoder_weights_from_a_local_file(tmp_path: Path) -> None:
    torch.manual_seed(1)
    reference = timm.create_model("resnet18")
    path = tmp_path / "resnet18.pt"
    torch.save(reference.state_dict(), path)

    model = build_segmenter(SegmenterConfig.small(**TINY, encoder_weights=str(path)))
    assert model.weights_info.source == "file" and model.weights_info.pretrained
    loaded = model.encoder.body.state_dict()
    expected = reference.state_dict()
    assert loaded.keys() <= expected.keys()
    for key, value in loaded.items():
        assert torch.equal(value, expected[key]), key

    random_again = build_segmenter(SegmenterConfig.small(**TINY, encoder_weights=str(path)), load_pretrained=False)
    assert not torch.equal(random_again.encoder.body.conv1.weight, reference.conv1.weight)


def test_bad_weights_file_is_a_clear_error(tmp_path: Path) -> None:
    wrong_arch = tmp_path / "resnet50.pt"
    torch.save(timm.create_model("resnet50").state_dict(), wrong_arch)
    with pytest.raises(ValueError, match="same architecture"):
        build_segmenter(SegmenterConfig.small(**TINY, encoder_weights=str(wrong_arch)))

    not_weights = tmp_path / "junk.pt"
    torch.save({"note": "no tensors here"}, not_weights)
    with pytest.raises(ValueError, match="state dict"):
        build_segmenter(SegmenterConfig.small(**TINY, encoder_weights=str(not_weights)))

    with pytest.raises(FileNotFoundError, match="does not exist"):
        build_segmenter(SegmenterConfig.small(**TINY, encoder_weights=str(tmp_path / "missing.pt")))


def test_a_package_whose_weights_were_damaged_is_refused_on_load(tmp_path: Path) -> None:
    torch.manual_seed(2)
    config = SegmenterConfig.small(**TINY, dilation_rates=(2, 4, 6, 8))
    save_model_package(tmp_path / "seg", SEGMENTER_KIND, config.to_dict(), build_segmenter(config))
    weights = tmp_path / "seg" / "weights.pt"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2 : len(data) // 2 + 16] = bytes(16)  # tensor bytes: torch would load it without complaint
    weights.write_bytes(bytes(data))
    with pytest.raises(DamagedWeights, match=r"weights\.pt has sha256 .* not the .* recorded when the model was saved"):
        load_model_package(tmp_path / "seg", {SEGMENTER_KIND: segmenter_builder}, SEGMENTER_KIND)
