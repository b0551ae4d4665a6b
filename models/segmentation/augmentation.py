"""Joint image/mask augmentation for segmentation training.

Geometric transforms are drawn once and applied to both image (bilinear) and mask (nearest neighbour); pixels
that a rotation or shrink brings in from outside the frame get :data:`IGNORE_INDEX` in the mask, so the
network is never taught that the black fill is background. Colour jitter touches the image only. Random numbers
come from torch's global generator, which the training loop seeds.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
import torchvision.transforms.v2.functional as TF
from torchvision.transforms import InterpolationMode

from models.segmentation.preprocessing import IGNORE_INDEX


@dataclass
class AugmentConfig:
    """Strength of each augmentation; 0 (or a (1, 1) scale range) turns one off.

    Attributes:
        hflip: Probability of a horizontal flip.
        vflip: Probability of a vertical flip (parts lie in any orientation on the conveyor).
        rotation_degrees: Rotation drawn uniformly in ``[-rotation_degrees, rotation_degrees]``.
        scale_range: Zoom factor drawn uniformly in this range.
        translate_fraction: Shift drawn uniformly up to this fraction of each side.
        affine_probability: Probability that the rotation/zoom/shift is applied at all.
        brightness: Brightness factor drawn in ``[1 - b, 1 + b]``.
        contrast: Contrast factor drawn in ``[1 - c, 1 + c]``.
        saturation: Saturation factor drawn in ``[1 - s, 1 + s]``.
        hue: Hue shift drawn in ``[-h, h]`` (fraction of the colour circle, at most 0.5).
        grayscale: Probability of turning the image grey (after the colour jitter).
    """

    hflip: float = 0.5
    vflip: float = 0.5
    rotation_degrees: float = 15.0
    scale_range: tuple[float, float] = (0.8, 1.2)
    translate_fraction: float = 0.05
    affine_probability: float = 0.7
    brightness: float = 0.25
    contrast: float = 0.25
    saturation: float = 0.2
    hue: float = 0.02
    grayscale: float = 0.0

    def __post_init__(self) -> None:
        self.scale_range = (float(self.scale_range[0]), float(self.scale_range[1]))
        if not 0 < self.scale_range[0] <= self.scale_range[1]:
            raise ValueError(f"scale_range must be (low, high) with 0 < low <= high, got {self.scale_range}")
        if not 0 <= self.hue <= 0.5:
            raise ValueError(f"hue must be in [0, 0.5], got {self.hue}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form for experiment tracking."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def strong(cls) -> AugmentConfig:
        """Heavier augmentation for few labelled frames (e.g. ``label_fraction=0.1``).

        Any orientation (parts lie on the belt at any angle), a wider zoom, and colour treated as no cue at all
        (any hue, 20 % greyscale): with a handful of frames the network otherwise learns the colours of the
        parts it has seen. It slows learning, so with many labels and a short budget the default is better.
        """
        return cls(
            rotation_degrees=180.0,
            scale_range=(0.75, 1.33),
            affine_probability=0.8,
            brightness=0.3,
            contrast=0.3,
            saturation=0.4,
            hue=0.5,
            grayscale=0.2,
        )

    @classmethod
    def preset(cls, name: str) -> AugmentConfig:
        """``"default"``, ``"strong"`` or ``"none"`` (for command lines)."""
        presets = {"default": cls, "strong": cls.strong, "none": cls.none}
        if name not in presets:
            raise ValueError(f"unknown augmentation preset {name!r}; use one of {sorted(presets)}")
        return presets[name]()

    @classmethod
    def none(cls) -> AugmentConfig:
        """No augmentation at all."""
        return cls(0.0, 0.0, 0.0, (1.0, 1.0), 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)


def _uniform(low: float, high: float) -> float:
    return float(torch.empty(()).uniform_(low, high)) if high > low else low


class JointAugment:
    """Callable applying one random draw of :class:`AugmentConfig` to an ``(image, mask)`` pair.

    The image is a ``(3, H, W)`` float tensor in [0, 1] (before normalisation); the mask an ``(H, W)`` integer
    tensor. Both keep their size.
    """

    def __init__(self, config: AugmentConfig | None = None) -> None:
        self.config = config or AugmentConfig()

    def __call__(self, image: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        cfg = self.config
        mask = mask[None]
        if torch.rand(()) < cfg.hflip:
            image, mask = image.flip(-1), mask.flip(-1)
        if torch.rand(()) < cfg.vflip:
            image, mask = image.flip(-2), mask.flip(-2)
        if torch.rand(()) < cfg.affine_probability:
            height, width = image.shape[-2:]
            angle = _uniform(-cfg.rotation_degrees, cfg.rotation_degrees)
            scale = _uniform(*cfg.scale_range)
            translate = [
                round(_uniform(-cfg.translate_fraction, cfg.translate_fraction) * width),
                round(_uniform(-cfg.translate_fraction, cfg.translate_fraction) * height),
            ]
            image = TF.affine(
                image, angle=angle, translate=translate, scale=scale, shear=[0.0, 0.0],
                interpolation=InterpolationMode.BILINEAR, fill=[0.0],
            )  # fmt: skip
            mask = TF.affine(
                mask.to(torch.uint8), angle=angle, translate=translate, scale=scale, shear=[0.0, 0.0],
                interpolation=InterpolationMode.NEAREST, fill=[float(IGNORE_INDEX)],
            ).to(mask.dtype)  # fmt: skip
        image = self._jitter(image)
        return image.clamp(0.0, 1.0), mask[0]

    def _jitter(self, image: torch.Tensor) -> torch.Tensor:
        cfg = self.config
        if cfg.brightness > 0:
            image = TF.adjust_brightness(image, _uniform(1 - cfg.brightness, 1 + cfg.brightness))
        if cfg.contrast > 0:
            image = TF.adjust_contrast(image, _uniform(1 - cfg.contrast, 1 + cfg.contrast))
        if cfg.saturation > 0:
            image = TF.adjust_saturation(image, _uniform(1 - cfg.saturation, 1 + cfg.saturation))
        if cfg.hue > 0:
            image = TF.adjust_hue(image, _uniform(-cfg.hue, cfg.hue))
        if cfg.grayscale > 0 and torch.rand(()) < cfg.grayscale:
            image = TF.rgb_to_grayscale(image, num_output_channels=3)
        return image
