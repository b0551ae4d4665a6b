"""Architecture configuration of the reverse-distillation detector.

Everything needed to rebuild the network lives here, so that a saved model package (JSON config plus a
``weights_only`` state dict) can be rebuilt without the training code. Training hyper-parameters (epochs,
learning rate) are arguments of :func:`models.detector.training.train_detector`, not part of the architecture.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from models.detector.recipes import SMALL_RESNET, recipe_for

# Feature levels RD4AD distils: ResNet layer1..layer3, strides 4, 8 and 16 (found by stride in any timm CNN).
TEACHER_STRIDES: tuple[int, ...] = (4, 8, 16)
#: Where the teacher's levels can be tapped (see :attr:`DetectorConfig.teacher_features`).
TEACHER_FEATURE_LOCATIONS = ("block", "expansion")


@dataclass
class DetectorConfig:
    """Architecture of :class:`models.detector.network.ReverseDistillation`.

    The defaults reproduce the paper's setting (WideResNet50 teacher, 256 px). ``DetectorConfig.small()`` gives
    the CPU-sized configuration used for tests and quick runs (ResNet18, 128 px).

    Attributes:
        backbone: timm name of the teacher (a ResNet family model: ``"wide_resnet50_2"``, ``"resnet18"``...).
        image_size: Side of the square network input in pixels; a multiple of 32 (the embedding has stride 32).
        teacher_weights: ``"timm"``, ``"none"`` (random initialisation) or a path to a local state-dict file
            (``"pretrained"`` is resolved to one of these by :func:`models.weight_sources.resolve_weights`).
        teacher_features: Where the teacher's levels are tapped. ``"block"``: the output of the last block at
            each stride (ResNet layer1..3, as RD4AD). ``"expansion"``: for inverted-residual networks
            (MobileNet, EfficientNet), the expanded activations inside that block (timm's
            ``feature_location="expansion"``), 4 to 6 times wider than the thin linear block outputs.
        teacher_zero_init_last: timm's default (``True``) zero-initialises the last BatchNorm of every residual
            branch, which makes a *randomly initialised* ResNet its stem followed by 1x1 shortcut projections
            (receptive field ~11 px). ``False`` keeps every branch active (a deep random network); it measured
            worse with random teachers (docs/detector.md). Irrelevant with pretrained weights.
        recalibrate_teacher_batchnorm: When true the teacher's BatchNorm running statistics are re-estimated on
            the normal training images once before training (a data-dependent initialisation for randomly
            initialised teachers, whose BatchNorm layers otherwise do nothing). Parameters stay untouched.
        feature_standardisation: When true the teacher's features are standardised per channel with mean and
            standard deviation measured on the normal training images (buffers fitted once before training,
            then frozen). Useful for randomly initialised teachers whose channels have arbitrary scales.
        fusion_channels: Channels of the multi-scale fused map; ``None`` means the deepest teacher level's.
        fusion_align_channels: Channels the stride-4 and stride-8 levels are brought to by the fusion's stride-2
            convolutions before they join the deepest level; ``None`` means the deepest level's (RD4AD's OCBE).
        vit_dim: Token width of the ViT block.
        vit_depth: Number of transformer encoder layers.
        vit_heads: Attention heads per layer; must divide ``vit_dim``.
        vit_mlp_ratio: Hidden width of the transformer MLP relative to ``vit_dim``.
        vit_dropout: Dropout inside the transformer (attention and MLP).
        embedding_channels: Channels of the compact embedding; ``None`` means twice the deepest teacher level's
            (RD4AD's OCBE: 2048 for WideResNet50, 512 for ResNet18).
        embedding_stride: 32 (RD4AD: the first residual block halves the fused stride-16 map) or 16 (no
            downsampling: a finer code for small inputs, where a stride-32 code is only 4x4 positions).
        student_widths: Internal widths of the student's three decoder stages from deep to shallow
            (strides 16, 8, 4); ``None`` means the teacher's channels at those levels capped at 512.
        student_blocks: Residual blocks per student stage from deep to shallow.
        smoothing_sigma: Standard deviation of the Gaussian that smooths the anomaly map, in pixels.
        fusion_weights: Fixed weights of the three level maps (shallow to deep), e.g. ``(0, 0.5, 0.5)`` to leave
            out the stride-4 level; ``None`` (default) fits them on synthetic anomalies after training (the
            paper's adaptive 1x1 weights, :mod:`models.detector.map_weights_fit`).
    """

    backbone: str = "wide_resnet50_2"
    image_size: int = 256
    teacher_weights: str = "none"
    teacher_features: str = "block"
    teacher_zero_init_last: bool = True
    recalibrate_teacher_batchnorm: bool = False
    feature_standardisation: bool = False
    fusion_channels: int | None = None
    fusion_align_channels: int | None = None
    vit_dim: int = 512
    vit_depth: int = 4
    vit_heads: int = 8
    vit_mlp_ratio: float = 4.0
    vit_dropout: float = 0.0
    embedding_channels: int | None = None
    embedding_stride: int = 32
    student_widths: tuple[int, int, int] | None = None
    student_blocks: tuple[int, int, int] = (2, 2, 2)
    smoothing_sigma: float = 4.0
    fusion_weights: tuple[float, float, float] | None = None

    def __post_init__(self) -> None:
        if self.image_size % 32 != 0 or self.image_size < 64:
            raise ValueError(
                f"image_size must be a multiple of 32 and at least 64 (the embedding has stride 32), got "
                f"{self.image_size}. Use e.g. 128 or 256."
            )
        if self.teacher_features not in TEACHER_FEATURE_LOCATIONS:
            raise ValueError(
                f"teacher_features must be one of {TEACHER_FEATURE_LOCATIONS}, got {self.teacher_features!r}"
            )
        if self.embedding_stride not in (16, 32):
            raise ValueError(f"embedding_stride must be 16 or 32, got {self.embedding_stride}")
        if self.vit_dim % self.vit_heads != 0:
            raise ValueError(
                f"vit_heads ({self.vit_heads}) must divide vit_dim ({self.vit_dim}); e.g. vit_dim=256 with 4 heads."
            )
        if self.student_widths is not None:
            self.student_widths = tuple(int(w) for w in self.student_widths)  # type: ignore[assignment]
            if len(self.student_widths) != 3:
                raise ValueError(f"student_widths needs three entries (deep to shallow), got {self.student_widths}")
        self.student_blocks = tuple(int(b) for b in self.student_blocks)  # type: ignore[assignment]
        if len(self.student_blocks) != 3 or min(self.student_blocks) < 1:
            raise ValueError(f"student_blocks needs three positive entries, got {self.student_blocks}")
        if self.fusion_weights is not None:
            self.fusion_weights = tuple(float(w) for w in self.fusion_weights)  # type: ignore[assignment]
            if len(self.fusion_weights) != 3 or min(self.fusion_weights) < 0 or sum(self.fusion_weights) <= 0:
                raise ValueError(
                    f"fusion_weights needs three non-negative weights with a positive sum, got {self.fusion_weights}"
                )
        if self.smoothing_sigma < 0:
            raise ValueError(f"smoothing_sigma must be >= 0 (0 disables smoothing), got {self.smoothing_sigma}")

    @classmethod
    def small(cls, **overrides: Any) -> DetectorConfig:
        """CPU-sized configuration: ResNet18 teacher at 128 px with a light ViT and student (tests, quick runs).

        Args:
            **overrides: Fields to change from the small defaults.
        """
        values: dict[str, Any] = {
            "backbone": "resnet18",
            "image_size": SMALL_RESNET.image_size,
            **SMALL_RESNET.architecture,
        }
        values.update(overrides)
        return cls(**values)

    @classmethod
    def for_backbone(cls, backbone: str, **overrides: Any) -> DetectorConfig:
        """The recommended configuration for ``backbone``: its family's recipe (:mod:`models.detector.recipes`).

        Args:
            backbone: timm model name.
            **overrides: Fields to change (e.g. ``image_size``, ``teacher_weights``).

        Raises:
            ValueError: When ``backbone`` belongs to no family with a recipe; the message lists them.
        """
        recipe = recipe_for(backbone)
        values: dict[str, Any] = {"backbone": backbone, "image_size": recipe.image_size, **recipe.architecture}
        values.update(overrides)
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary (tuples become lists)."""
        out = asdict(self)
        for key, value in out.items():
            if isinstance(value, tuple):
                out[key] = list(value)
        return out

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> DetectorConfig:
        """Rebuild from :meth:`to_dict` output; unknown keys are an error so typos do not pass silently."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown detector config keys {unknown}; known keys: {sorted(known)}")
        values = dict(values)
        for key in ("student_widths", "student_blocks", "fusion_weights"):
            if values.get(key) is not None:
                values[key] = tuple(values[key])
        return cls(**values)
