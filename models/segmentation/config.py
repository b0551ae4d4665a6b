"""Architecture configuration of the AMAM U-Net segmenter.

The configuration is the single source of truth for rebuilding a trained network: it is stored as JSON in the
model package (:mod:`models.packaging`) and fed back to :func:`models.segmentation.builder.build_segmenter`. It
therefore holds only JSON-safe values, and :meth:`SegmenterConfig.from_dict` accepts the lists that JSON turns
tuples into.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any

#: Encoder levels that feed the decoder through skip connections, shallow to deep. Level ``k`` has stride
#: ``2**k``: level 1 is the stem (stride 2), level 4 is ``layer3`` (stride 16, the last level before the
#: dilated ``layer4`` that feeds the AMAM).
SKIP_LEVELS: tuple[int, ...] = (1, 2, 3, 4)

#: Ratio of input resolution to the resolution of the deepest encoder features (method paper, sec. 3.1.1).
OUTPUT_STRIDE = 16

#: The CPU-sized architecture on top of a ResNet18 encoder: narrower AMAM and decoder, 256 px inference
#: (docs/segmenter.md). :meth:`SegmenterConfig.small` and the small recipe (:mod:`models.segmentation.recipes`)
#: both read it.
SMALL_ARCHITECTURE: dict[str, Any] = {
    "backbone": "resnet18",
    "amam_channels": 128,
    "decoder_channels": (128, 64, 48, 32),
    "input_long_side": 256,
}


def _as_int_tuple(value: Any, name: str) -> tuple[int, ...]:
    try:
        items = tuple(int(v) for v in value)
    except TypeError as error:
        raise TypeError(f"{name} must be a sequence of integers, got {value!r}") from error
    if any(float(v) != float(i) for v, i in zip(value, items, strict=True)):
        raise ValueError(f"{name} must hold integers, got {value!r}")
    return items


@dataclass
class SegmenterConfig:
    """Everything needed to rebuild an :class:`~models.segmentation.network.AmamUNet`.

    The defaults are the paper's configuration (ResNet50 encoder, AMAM dilation rates 4/8/12/16, gate attention
    on the three shallowest skip connections). :meth:`small` gives the CPU-sized variant used for quick runs.

    Attributes:
        backbone: timm ResNet name (``"resnet18"``, ``"resnet34"``, ``"resnet50"``, ``"resnet101"``...). It is
            built with ``output_stride=16``: ``layer4`` is dilated instead of strided.
        num_classes: Number of output classes, background included (2 for component vs background).
        class_names: One name per class, used in evaluation reports.
        dilation_rates: Dilation rate of each depthwise-separable AMAM path (one path per rate).
        gated_levels: Skip levels (1 = stride 2 ... 4 = stride 16) that go through an additive attention gate;
            the others go through a plain 1x1 convolution. The paper gates levels 1-3 (its "first three layers")
            and uses a 1x1 convolution on the deepest skip.
        encoder_weights: ``"none"`` (random init), ``"timm"`` (timm's ImageNet weights) or a path to a local
            state-dict file, as in :func:`models.backbones.create_feature_extractor`.
        input_long_side: Long side, in pixels, that frames are resized to for inference.
        amam_channels: Channels of each of the six AMAM paths and of the AMAM output.
        amam_key_channels: Channels of the query/key projections of the AMAM self-attention; ``None`` means
            one eighth of the concatenated channels (as in DANet's position attention).
        amam_dropout: Dropout after the AMAM output projection (0 disables it).
        separable: Use depthwise-separable dilated convolutions in the AMAM (the paper); ``False`` builds
            plain dilated 3x3 convolutions for comparison.
        decoder_channels: Output channels of the four decoder stages, deepest (level 4, stride 16) first.
        head_channels: Channels of the full-resolution refinement convolution before the classifier.
    """

    backbone: str = "resnet50"
    num_classes: int = 2
    class_names: tuple[str, ...] = ("background", "component")
    dilation_rates: tuple[int, ...] = (4, 8, 12, 16)
    gated_levels: tuple[int, ...] = (1, 2, 3)
    encoder_weights: str = "none"
    input_long_side: int = 512
    amam_channels: int = 256
    amam_key_channels: int | None = None
    amam_dropout: float = 0.1
    separable: bool = True
    decoder_channels: tuple[int, int, int, int] = (256, 128, 64, 32)
    head_channels: int = 16

    def __post_init__(self) -> None:
        self.dilation_rates = _as_int_tuple(self.dilation_rates, "dilation_rates")
        self.gated_levels = tuple(sorted(set(_as_int_tuple(self.gated_levels, "gated_levels"))))
        self.decoder_channels = _as_int_tuple(self.decoder_channels, "decoder_channels")  # type: ignore[assignment]
        self.class_names = tuple(str(n) for n in self.class_names)
        if self.num_classes < 2:
            raise ValueError(f"num_classes must be at least 2 (background plus one class), got {self.num_classes}")
        if len(self.class_names) != self.num_classes:
            raise ValueError(
                f"class_names has {len(self.class_names)} names for num_classes={self.num_classes}; "
                "give one name per class, background first"
            )
        if not self.dilation_rates or any(r < 1 for r in self.dilation_rates):
            raise ValueError(f"dilation_rates must be one or more positive integers, got {self.dilation_rates}")
        unknown = [level for level in self.gated_levels if level not in SKIP_LEVELS]
        if unknown:
            raise ValueError(
                f"gated_levels {unknown} do not exist; skip levels are {SKIP_LEVELS} "
                "(1 = stride 2 stem ... 4 = stride 16)"
            )
        if len(self.decoder_channels) != len(SKIP_LEVELS) or any(c < 1 for c in self.decoder_channels):
            raise ValueError(
                f"decoder_channels needs {len(SKIP_LEVELS)} positive channel counts (deepest stage first), "
                f"got {self.decoder_channels}"
            )
        for name in ("amam_channels", "head_channels", "input_long_side"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.amam_key_channels is not None and self.amam_key_channels < 1:
            raise ValueError(f"amam_key_channels must be positive or None, got {self.amam_key_channels}")
        if not 0.0 <= self.amam_dropout < 1.0:
            raise ValueError(f"amam_dropout must be in [0, 1), got {self.amam_dropout}")
        if self.input_long_side % OUTPUT_STRIDE:
            raise ValueError(f"input_long_side must be a multiple of {OUTPUT_STRIDE}, got {self.input_long_side}")

    @classmethod
    def small(cls, **overrides: Any) -> SegmenterConfig:
        """CPU-sized configuration: ResNet18 encoder, narrower AMAM and decoder, 256 px inference.

        Args:
            **overrides: Any field to change on top of the small preset.
        """
        return cls(**{**SMALL_ARCHITECTURE, **overrides})

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dictionary (tuples become lists) that :meth:`from_dict` reads back."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SegmenterConfig:
        """Build a configuration from :meth:`to_dict` output; missing keys take their defaults.

        Raises:
            ValueError: When ``data`` holds keys this version does not know (a package from a newer
                defectflow, or a typo).
        """
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(
                f"unknown segmenter config keys {unknown}; known keys are {sorted(known)}. "
                "Fix the key names, or load the package with the defectflow version that wrote it."
            )
        return cls(**data)

    def replace(self, **changes: Any) -> SegmenterConfig:
        """Copy with some fields changed (validated like a new configuration)."""
        return replace(self, **changes)
