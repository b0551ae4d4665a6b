"""Pretrained weights by default, never silently random: the sources, their order, and every way they fail."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import timm
import torch

from models.backbones import create_feature_extractor, feature_levels
from models.detector.config import TEACHER_STRIDES, DetectorConfig
from models.detector.recipes import recipe_for
from models.detector.teacher import Teacher
from models.weight_sources import (
    PRETRAINED,
    RANDOM_INIT,
    TIMM_PRETRAINED,
    WeightSettings,
    WeightsUnavailableError,
    resolve_weights,
)

ROOT = Path(__file__).resolve().parents[1]
SHARED_WEIGHTS = ROOT.parent / "shared" / "weights" / "mobilenetv2_100-imagenet-uint8.pth"


@pytest.fixture
def offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No hub and empty caches: what an air-gapped plant machine sees."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    import huggingface_hub.constants as hf_constants

    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))


@pytest.fixture
def resnet18_file(tmp_path: Path) -> Path:
    """A state dict of timm's resnet18 (random values; the shape is what the tests need)."""
    path = tmp_path / "resnet18-weights.pth"
    torch.save(timm.create_model("resnet18").state_dict(), path)
    return path


def test_sources_are_tried_in_order_flag_setting_folder_then_timm(offline, resnet18_file: Path, tmp_path: Path) -> None:
    folder = tmp_path / "weights"
    folder.mkdir()
    (folder / "resnet18.pth").write_bytes(resnet18_file.read_bytes())
    flag_file = tmp_path / "flag.pth"
    flag_file.write_bytes(resnet18_file.read_bytes())
    both = WeightSettings(file=str(resnet18_file), folder=folder)

    assert resolve_weights(str(flag_file), "resnet18", "teacher", both) == str(flag_file)
    assert resolve_weights(PRETRAINED, "resnet18", "teacher", both) == str(resnet18_file)
    assert resolve_weights(None, "resnet18", "teacher", WeightSettings(folder=folder)) == str(folder / "resnet18.pth")
    assert resolve_weights(RANDOM_INIT, "resnet18", "teacher", both) == RANDOM_INIT
    # the folder also takes <name>-<tag>.pth when it is the only match, and refuses to guess between several
    tagged = tmp_path / "tagged"
    tagged.mkdir()
    (tagged / "resnet18-imagenet.pth").write_bytes(resnet18_file.read_bytes())
    assert resolve_weights(PRETRAINED, "resnet18", "teacher", WeightSettings(folder=tagged)).endswith(
        "resnet18-imagenet.pth"
    )
    (tagged / "resnet18-other.pth").write_bytes(resnet18_file.read_bytes())
    with pytest.raises(WeightsUnavailableError, match="several files for resnet18"):
        resolve_weights(PRETRAINED, "resnet18", "teacher", WeightSettings(folder=tagged))


def test_nothing_available_lists_the_three_ways_out(offline, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    for requested, settings in [(PRETRAINED, WeightSettings()), (PRETRAINED, WeightSettings(folder=empty))]:
        with pytest.raises(WeightsUnavailableError) as caught:
            resolve_weights(requested, "resnet18", "teacher", settings)
        message = str(caught.value)
        assert "Three ways out" in message and "--teacher-weights PATH" in message
        assert "DEFECTFLOW_WEIGHTS_DIR" in message and "hub" in message and "none" in message
    with pytest.raises(WeightsUnavailableError, match="model hub cannot be reached"):
        resolve_weights(
            TIMM_PRETRAINED, "resnet18", "encoder", WeightSettings(file_setting="DEFECTFLOW_ENCODER_WEIGHTS")
        )
    with pytest.raises(WeightsUnavailableError, match="does not exist"):
        resolve_weights(str(tmp_path / "missing.pth"), "resnet18", "teacher", WeightSettings())
    with pytest.raises(WeightsUnavailableError, match=r"DEFECTFLOW_TEACHER_WEIGHTS=.*names no file"):
        resolve_weights(PRETRAINED, "resnet18", "teacher", WeightSettings(file=str(tmp_path / "gone.pth")))


def test_timm_cache_is_used_without_the_hub(offline, resnet18_file: Path, tmp_path: Path, monkeypatch) -> None:
    cfg = timm.models.get_pretrained_cfg("resnet18")
    checkpoints = tmp_path / "torch-home" / "hub" / "checkpoints"
    if cfg.hf_hub_id:  # timm's weights live on the Hugging Face hub: lay the file out as its cache does
        from huggingface_hub.constants import HF_HUB_CACHE

        repo = Path(HF_HUB_CACHE) / f"models--{cfg.hf_hub_id.replace('/', '--')}"
        snapshot = repo / "snapshots" / ("0" * 40)
        snapshot.mkdir(parents=True)
        (repo / "refs").mkdir()
        (repo / "refs" / "main").write_text("0" * 40)
        torch.save(torch.load(resnet18_file, weights_only=True), snapshot / "pytorch_model.bin")
    else:
        checkpoints.mkdir(parents=True)
        (checkpoints / Path(cfg.url).name).write_bytes(resnet18_file.read_bytes())
    assert resolve_weights(PRETRAINED, "resnet18", "teacher", WeightSettings()) == TIMM_PRETRAINED
    model, info = create_feature_extractor("resnet18", (1, 2, 3), TIMM_PRETRAINED)
    assert info.source == "timm" and info.pretrained and "sha256:" in info.detail
    reference = torch.load(resnet18_file, weights_only=True)
    torch.testing.assert_close(model.state_dict()["conv1.weight"], reference["conv1.weight"])


def test_wrong_truncated_and_pickled_files_are_clear_errors_naming_the_file(tmp_path: Path) -> None:
    wrong = tmp_path / "wrong-architecture.pth"
    torch.save(timm.create_model("resnet50").state_dict(), wrong)
    truncated = tmp_path / "truncated.pth"
    torch.save(timm.create_model("resnet18").state_dict(), truncated)
    truncated.write_bytes(truncated.read_bytes()[: truncated.stat().st_size // 3])
    pickled = tmp_path / "pickled.pth"
    pickled.write_bytes(pickle.dumps({"model": timm.create_model("resnet18")}))
    expectations = [
        (wrong, "does not fit|lacks"),
        (truncated, "truncated or damaged"),
        (pickled, "weights_only=True was refused|could not be read"),
    ]
    for path, pattern in expectations:
        with pytest.raises(ValueError, match=pattern) as caught:
            Teacher("resnet18", weights=str(path))
        assert str(path) in str(caught.value)


def test_cli_stops_before_any_work_with_exit_2_when_no_weights_can_be_had(tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "hf"), "TORCH_HOME": str(tmp_path)}
    for key in ("DEFECTFLOW_TEACHER_WEIGHTS", "DEFECTFLOW_WEIGHTS_DIR", "PREFECT_API_URL"):
        env.pop(key, None)
    data = tmp_path / "data"
    (data / "train" / "good").mkdir(parents=True)
    command = [sys.executable, "-m", "flows.cli", "train", "detector", "--data", str(data), "--home", str(home)]
    done = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr
    assert "Three ways out" in done.stderr and "mobilenetv2_100" in done.stderr
    assert not (home / "mlflow.db").exists()

    wrong = tmp_path / "resnet50.pth"
    torch.save(timm.create_model("resnet50").state_dict(), wrong)
    command += ["--backbone", "resnet18", "--teacher-weights", str(wrong)]
    done = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and str(wrong) in done.stderr.replace("\n", ""), done.stderr
    assert not (home / "mlflow.db").exists()


@pytest.mark.parametrize("backbone", ["resnet18", "wide_resnet50_2", "mobilenetv2_100", "efficientnet_b0"])
def test_any_timm_cnn_family_gives_a_teacher_and_a_recipe_matched_to_its_channels(backbone: str) -> None:
    teacher = Teacher(backbone)
    assert teacher.strides == list(TEACHER_STRIDES)
    config = DetectorConfig.for_backbone(backbone)
    assert recipe_for(backbone).image_size == config.image_size
    if recipe_for(backbone).family == "mobile":
        assert config.vit_dim < 512 and teacher.channels[-1] <= 192
    expansion = Teacher(backbone, features="expansion") if recipe_for(backbone).family == "mobile" else None
    if expansion is not None:
        assert expansion.strides == list(TEACHER_STRIDES) and expansion.channels[0] > teacher.channels[0]


def test_unknown_teachers_get_a_list_of_what_is_supported() -> None:
    with pytest.raises(ValueError, match=r"Supported families.*wide_resnet50_2.*mobilenetv2_100"):
        DetectorConfig.for_backbone("vit_base_patch16_224")
    with pytest.raises(ValueError, match="not at 4"):
        feature_levels("vit_tiny_patch16_224", TEACHER_STRIDES)
    with pytest.raises(ValueError, match="timm knows no model"):
        Teacher("no_such_net")


@pytest.mark.shared
@pytest.mark.skipif(not SHARED_WEIGHTS.is_file(), reason=f"shared weights file {SHARED_WEIGHTS} is absent")
def test_shared_imagenet_file_gives_timm_mobilenetv2_features_not_random_ones() -> None:
    torch.manual_seed(0)
    teacher = Teacher("mobilenetv2_100", weights=str(SHARED_WEIGHTS))
    random_teacher = Teacher("mobilenetv2_100")
    reference = timm.create_model("mobilenetv2_100", features_only=True, out_indices=(1, 2, 3))
    state = torch.load(SHARED_WEIGHTS, weights_only=True)
    reference.load_state_dict({k: v for k, v in state.items() if k in reference.state_dict()}, strict=True)
    reference.eval()
    images = torch.randn(2, 3, 128, 128)
    with torch.no_grad():
        ours, theirs, rand = teacher(images), reference(images), random_teacher(images)
    assert teacher.weights_info.pretrained and "sha256:" in teacher.weights_info.detail
    for mine, timms, random_level in zip(ours, theirs, rand, strict=True):
        torch.testing.assert_close(mine, timms)
        assert not torch.allclose(mine, random_level, atol=1e-2)
