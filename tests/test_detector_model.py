"""Architecture of the reverse-distillation detector (ResNet18, small inputs, CPU)."""

from __future__ import annotations

import timm
import torch
from torch import nn

from models.detector.anomaly_map import AnomalyMapGenerator, GaussianSmoothing, gaussian_kernel_size
from models.detector.builder import build_detector
from models.detector.config import DetectorConfig
from models.detector.loss import ReverseDistillationLoss, cosine_distance_map
from models.detector.network import ReverseDistillation
from models.detector.vit_block import ViTBlock

TINY = {"vit_dim": 64, "vit_heads": 4, "vit_depth": 1, "embedding_channels": 128, "student_widths": (96, 48, 32)}


def tiny(image_size: int = 64, **overrides: object) -> ReverseDistillation:
    torch.manual_seed(0)
    return build_detector(DetectorConfig.small(image_size=image_size, **{**TINY, **overrides}))


def test_teacher_is_frozen_and_stays_in_eval_mode() -> None:
    model = tiny()
    model.train()
    assert model.training and model.student.training and model.bottleneck.training
    assert not model.teacher.training
    assert all(not m.training for m in model.teacher.modules())
    assert all(not p.requires_grad for p in model.teacher.parameters())
    trainable = {id(p) for p in model.trainable_parameters()}
    assert trainable and not trainable & {id(p) for p in model.teacher.parameters()}
    # BatchNorm statistics of the teacher must not move during a training forward pass
    before = {k: v.clone() for k, v in model.teacher.state_dict().items()}
    model(torch.randn(2, 3, 64, 64))
    assert all(torch.equal(before[k], v) for k, v in model.teacher.state_dict().items())


def test_student_reconstructs_teacher_shapes() -> None:
    model = tiny()
    teacher_features, student_features = model(torch.randn(2, 3, 64, 64))
    assert [f.shape[1] for f in teacher_features] == model.teacher.channels == [64, 128, 256]
    assert [tuple(s.shape) for s in student_features] == [tuple(t.shape) for t in teacher_features]
    assert [64 // f.shape[-1] for f in teacher_features] == [4, 8, 16]


def test_vit_tokens_are_the_fused_map_positions() -> None:
    for image_size, grid in ((256, 16), (224, 14)):
        model = tiny(image_size)
        teacher_features = model.teacher(torch.randn(1, 3, image_size, image_size))
        fused = model.bottleneck.fusion(teacher_features)
        tokens = model.bottleneck.vit.tokens(fused)
        assert tuple(fused.shape[-2:]) == (grid, grid)
        assert tokens.shape[1] == grid * grid
        assert model.bottleneck.vit.pos_embed.shape[1] == grid * grid
    # a grid that differs from the configured one gets an interpolated positional embedding
    block = ViTBlock(in_channels=8, dim=16, depth=1, heads=2, mlp_ratio=2.0, grid_size=16)
    assert block(torch.randn(1, 8, 14, 14)).shape == (1, 16, 14, 14)


def test_student_is_not_a_mirror_of_the_teacher() -> None:
    model = tiny()
    teacher_shapes = sorted(tuple(p.shape) for p in model.teacher.parameters())
    student_shapes = sorted(tuple(p.shape) for p in model.student.parameters())
    assert student_shapes != list(reversed(teacher_shapes)) and student_shapes != teacher_shapes
    assert not any(isinstance(m, nn.ConvTranspose2d) for m in model.student.modules())
    teacher_blocks = {type(m).__name__ for m in model.teacher.modules()}
    student_blocks = {type(m).__name__ for m in model.student.modules()}
    assert "PreActResidualBlock" in student_blocks and not student_blocks & {"BasicBlock", "Bottleneck"}
    assert "BasicBlock" in teacher_blocks


def test_loss_is_zero_for_equal_features_and_positive_otherwise() -> None:
    criterion = ReverseDistillationLoss()
    features = [torch.randn(2, c, s, s) for c, s in ((8, 16), (16, 8), (32, 4))]
    assert float(criterion(features, [f.clone() for f in features])) < 1e-6
    assert float(criterion(features, [2.5 * f for f in features])) < 1e-6  # cosine ignores scale
    assert float(criterion(features, [torch.randn_like(f) for f in features])) > 0.5


def test_cosine_distance_is_torchs_cosine_in_both_layouts_and_safe_at_zero() -> None:
    generator = torch.Generator().manual_seed(0)
    teacher = torch.randn(2, 32, 8, 8, generator=generator)
    student = torch.randn(2, 32, 8, 8, generator=generator)
    expected = 1.0 - torch.nn.functional.cosine_similarity(teacher, student, dim=1, eps=1e-8)
    for layout in (torch.contiguous_format, torch.channels_last):
        got = cosine_distance_map(teacher.contiguous(memory_format=layout), student.contiguous(memory_format=layout))
        torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)
    student = student.clone()
    student[:, :, 0, 0] = 0.0  # a dead position: distance 1, and a finite gradient for training
    student.requires_grad_(True)
    distance = cosine_distance_map(teacher, student)
    distance.sum().backward()
    assert torch.allclose(distance[:, 0, 0], torch.ones(2)) and torch.isfinite(student.grad).all()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert cosine_distance_map(teacher.bfloat16(), teacher.bfloat16()).dtype == torch.float32


def test_anomaly_map_starts_equal_weighted_with_sigma_4() -> None:
    generator = AnomalyMapGenerator(image_size=64)
    assert torch.allclose(generator.fusion.weight.flatten(), torch.full((3,), 1 / 3))
    assert float(generator.fusion.bias.detach()) == 0.0
    assert generator.smoothing.sigma == 4.0 and generator.smoothing.kernel_size == gaussian_kernel_size(4.0) == 33
    assert abs(float(generator.smoothing.kernel.sum()) - 1.0) < 1e-6
    constant = torch.full((1, 1, 40, 40), 0.7)
    assert torch.allclose(GaussianSmoothing(4.0)(constant), constant, atol=1e-6)  # reflect padding: no dark edges
    teacher = [torch.randn(2, 4, 16, 16), torch.randn(2, 4, 8, 8), torch.randn(2, 4, 4, 4)]
    student = [t.clone() for t in teacher]
    student[0][0, :, 3:6, 3:6] = -student[0][0, :, 3:6, 3:6]
    with torch.no_grad():
        maps = generator(teacher, student)
        level_maps = generator.level_maps(teacher, student)
    assert maps.shape == (2, 1, 64, 64)
    assert float(maps[1].abs().max()) < 1e-5
    scores = AnomalyMapGenerator.image_scores(maps)
    assert scores[0] == maps[0].max() and scores[0] > 0.05
    # fusion and smoothing commute: fusing the smoothed level maps gives the same map
    with torch.no_grad():
        assert torch.allclose(generator.fusion(level_maps), maps, atol=1e-6)


def test_score_shapes_and_input_checks() -> None:
    model = tiny().eval()
    with torch.no_grad():
        maps, scores = model.score(torch.randn(3, 3, 64, 64))
    assert maps.shape == (3, 1, 64, 64) and scores.shape == (3,)
    for bad in (torch.randn(1, 1, 64, 64), torch.randn(1, 3, 60, 64)):
        try:
            model(bad)
        except ValueError as error:
            assert "expected" in str(error) or "multiples of 32" in str(error)
        else:
            raise AssertionError("bad input accepted")


def test_teacher_weights_from_a_local_state_dict(tmp_path) -> None:
    torch.manual_seed(123)
    source = timm.create_model("resnet18", features_only=True, out_indices=(1, 2, 3))
    path = tmp_path / "resnet18.pt"
    torch.save(source.state_dict(), path)
    model = build_detector(DetectorConfig.small(image_size=64, teacher_weights=str(path), **TINY))
    assert model.weights_info.source == "file" and model.weights_info.pretrained
    for name, value in source.state_dict().items():
        assert torch.equal(model.teacher.encoder.state_dict()[name], value)


def test_random_teacher_is_recorded(caplog) -> None:
    with caplog.at_level("WARNING"):
        model = tiny()
    assert model.weights_info.source == "random" and not model.weights_info.pretrained
    assert "randomly initialised" in caplog.text


def test_config_round_trip_and_errors() -> None:
    config = DetectorConfig.small(image_size=96, **TINY)
    assert DetectorConfig.from_dict(config.to_dict()) == config
    for bad in ({"image_size": 100}, {"vit_dim": 30, "vit_heads": 4}):
        try:
            DetectorConfig(**bad)
        except ValueError:
            continue
        raise AssertionError(f"{bad} accepted")
    try:
        DetectorConfig.from_dict({**config.to_dict(), "typo": 1})
    except ValueError as error:
        assert "typo" in str(error)


def test_presets_and_random_teacher_switches() -> None:
    assert DetectorConfig.for_backbone("resnet18") == DetectorConfig.small()
    assert DetectorConfig.for_backbone("wide_resnet50_2", image_size=224).vit_dim == DetectorConfig().vit_dim
    model = tiny(embedding_stride=16, recalibrate_teacher_batchnorm=True)
    images = torch.randn(4, 3, 64, 64)
    assert model.bottleneck(model.teacher(images)).shape[-1] == 4  # stride-16 code at 64 px
    teacher_features, student_features = model(images)
    assert [s.shape for s in student_features] == [t.shape for t in teacher_features]
    running_mean = model.teacher.encoder.bn1.running_mean.clone()
    assert model.teacher.recalibrate_batchnorm([images, images]) == 8
    assert not torch.equal(running_mean, model.teacher.encoder.bn1.running_mean)
    assert not model.teacher.training and all(not p.requires_grad for p in model.teacher.parameters())


def test_channels_last_scoring_gives_the_same_maps() -> None:
    """Workers score in the channels-last layout (tasks.model_cache, inference.score_images) for speed; the maps
    and scores must be those of the plain layout."""
    from models.detector.inference import score_images
    from models.model_kinds import for_inference

    torch.manual_seed(0)
    model = build_detector(DetectorConfig.small(teacher_weights="none")).eval()
    images = torch.randn(3, 3, 128, 128)
    with torch.inference_mode():
        plain_maps, plain_scores = model.score(images)
    model = for_inference(model)  # what the workers' model cache does
    convolution = next(m for m in model.student.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3))
    assert convolution.weight.is_contiguous(memory_format=torch.channels_last)
    maps, scores = score_images(model, images)
    torch.testing.assert_close(torch.from_numpy(maps), plain_maps[:, 0], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(torch.from_numpy(scores), plain_scores, atol=1e-5, rtol=1e-4)


def test_bf16_autocast_keeps_float32_maps_close_to_full_precision() -> None:
    """GPU workers score under bf16 autocast (inference.score_images); the network's part of that, run on the CPU's
    bf16 autocast: maps and scores stay float32 (the distances are computed in it) and within bf16's rounding of
    the full-precision ones. The CUDA kernels themselves need a GPU (README says their figures are unmeasured)."""
    from models.model_kinds import INFERENCE_MEMORY_FORMAT, for_inference

    torch.manual_seed(0)
    model = for_inference(tiny().eval())
    images = torch.randn(4, 3, 64, 64).contiguous(memory_format=INFERENCE_MEMORY_FORMAT)
    with torch.inference_mode():
        full_maps, full_scores = model.score(images)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            maps, scores = model.score(images)
    assert maps.dtype == scores.dtype == torch.float32
    torch.testing.assert_close(maps, full_maps, atol=1e-2, rtol=0)
    torch.testing.assert_close(scores, full_scores, atol=1e-2, rtol=0)


def test_fusion_brings_the_shallow_levels_to_the_deepest_width_unless_a_recipe_says_fewer() -> None:
    from models.detector.feature_fusion import MultiScaleFusion

    levels = [torch.randn(2, 24, 32, 32), torch.randn(2, 40, 16, 16), torch.randn(2, 80, 8, 8)]
    ocbe = MultiScaleFusion([24, 40, 80], 64)
    widths = [m.out_channels for m in ocbe.modules() if isinstance(m, nn.Conv2d)]
    assert widths == [40, 80, 80, 64]  # RD4AD's OCBE: stride 4 -> 8 at the middle width, then the deepest width
    assert ocbe.mix[0].in_channels == 3 * 80
    lean = MultiScaleFusion([24, 40, 80], 64, align_channels=16)
    assert [m.out_channels for m in lean.modules() if isinstance(m, nn.Conv2d)] == [16, 16, 16, 64]
    assert lean.mix[0].in_channels == 16 + 16 + 80
    for fusion in (ocbe, lean):
        assert fusion(levels).shape == (2, 64, 8, 8)
