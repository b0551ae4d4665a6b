"""The frozen teacher: a timm CNN cut at stride 16, returning the three levels RD4AD distils (strides 4, 8, 16).

The teacher is never trained. Its parameters have ``requires_grad=False`` and :meth:`Teacher.train` is
overridden so that ``model.train()`` on the whole detector leaves the teacher in eval mode: BatchNorm must keep
using its stored statistics, otherwise the features the student learns to reconstruct would drift with every
training batch and differ between training and inference.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from models.backbones import RANDOM_INIT, WeightsInfo, create_feature_extractor, feature_levels
from models.detector.config import TEACHER_STRIDES


class Teacher(nn.Module):
    """Frozen multi-scale feature extractor (strides 4, 8, 16).

    Args:
        backbone: timm model name.
        weights: ``"timm"``, ``"none"`` or a path to a local state-dict file (see :mod:`models.backbones`).
        zero_init_last: Passed to timm for random initialisation only (see
            :attr:`DetectorConfig.teacher_zero_init_last`).
        standardise: Whether :meth:`forward` standardises each channel with the fitted statistics.
        features: ``"block"`` or ``"expansion"`` (see :attr:`DetectorConfig.teacher_features`).

    Attributes:
        channels: Channels of the three levels, from shallow to deep.
        strides: Strides of the three levels.
        weights_info: Where the weights came from.
    """

    def __init__(
        self,
        backbone: str,
        weights: str = RANDOM_INIT,
        zero_init_last: bool = True,
        standardise: bool = False,
        features: str = "block",
    ) -> None:
        super().__init__()
        kwargs: dict[str, object] = {}
        if features != "block":
            kwargs["feature_location"] = features
        if weights in (RANDOM_INIT, "", None) and not zero_init_last:
            kwargs["zero_init_last"] = False
        try:
            levels = feature_levels(backbone, TEACHER_STRIDES, **kwargs)
            self.encoder, self.weights_info = create_feature_extractor(backbone, levels, weights, **kwargs)
        except TypeError as error:
            raise ValueError(
                f"could not build teacher {backbone!r} with {kwargs} ({error}). teacher_zero_init_last=False is "
                "for ResNets, teacher_features='expansion' for MobileNets and EfficientNets: use the defaults "
                "for other backbones."
            ) from error
        except RuntimeError as error:
            if "Unknown model" not in str(error):
                raise
            raise ValueError(
                f"timm knows no model {backbone!r}. Use a timm CNN name such as resnet18, wide_resnet50_2, "
                "mobilenetv2_100, mobilenetv3_large_100 or efficientnet_b0."
            ) from error
        self.channels: list[int] = list(self.encoder.feature_info.channels())
        self.strides: list[int] = list(self.encoder.feature_info.reduction())
        self.standardise = standardise
        for level, channels in enumerate(self.channels):
            self.register_buffer(f"feature_mean{level}", torch.zeros(channels))
            self.register_buffer(f"feature_std{level}", torch.ones(channels))
        for parameter in self.parameters():
            parameter.requires_grad_(False)
        super().train(False)

    def train(self, mode: bool = True) -> Teacher:
        """Keep the teacher in eval mode whatever ``mode`` says (its BatchNorm statistics are part of it)."""
        return super().train(False)

    @torch.no_grad()
    def raw_features(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Features before standardisation, shallow to deep."""
        return list(self.encoder(images))

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Return the three feature maps ``(N, C_k, H/s_k, W/s_k)``, standardised when configured."""
        features = self.raw_features(images)
        if not self.standardise:
            return features
        return [
            (feature - self._buffer("feature_mean", k)[None, :, None, None])
            / self._buffer("feature_std", k)[None, :, None, None]
            for k, feature in enumerate(features)
        ]

    def _buffer(self, name: str, level: int) -> torch.Tensor:
        value = getattr(self, f"{name}{level}")
        assert isinstance(value, torch.Tensor)
        return value

    @torch.no_grad()
    def fit_standardisation(self, batches: Iterable[torch.Tensor], eps: float = 1e-3) -> None:
        """Measure per-channel mean and standard deviation of the raw features over normal images.

        Called once before training; the statistics are buffers, so they are saved with the weights and the
        teacher stays frozen afterwards. ``eps`` (relative to the mean standard deviation of the level) keeps
        near-dead channels of a random network from being blown up to unit variance.

        Args:
            batches: Normalised image batches ``(N, 3, H, W)`` on the teacher's device.
            eps: Floor for each channel's standard deviation, relative to the level's mean std.

        Raises:
            ValueError: When ``batches`` is empty.
        """
        sums: list[torch.Tensor] | None = None
        squares: list[torch.Tensor] = []
        positions: list[int] = []
        for images in batches:
            features = [f.double() for f in self.raw_features(images)]
            if sums is None:
                sums = [torch.zeros(f.shape[1], dtype=torch.float64, device=f.device) for f in features]
                squares = [torch.zeros_like(s) for s in sums]
                positions = [0 for _ in features]
            for k, feature in enumerate(features):
                sums[k] += feature.sum(dim=(0, 2, 3))
                squares[k] += (feature**2).sum(dim=(0, 2, 3))
                positions[k] += feature.shape[0] * feature.shape[2] * feature.shape[3]
        if sums is None:
            raise ValueError("fit_standardisation got no images; pass at least one batch of normal images.")
        for k, (total, square) in enumerate(zip(sums, squares, strict=True)):
            mean = total / positions[k]
            std = (square / positions[k] - mean**2).clamp_min(0).sqrt()
            std = std.clamp_min(eps * float(std.mean()) + 1e-12)
            self._buffer("feature_mean", k).copy_(mean.float())
            self._buffer("feature_std", k).copy_(std.float())

    @torch.no_grad()
    def recalibrate_batchnorm(self, batches: Iterable[torch.Tensor]) -> int:
        """Re-estimate the BatchNorm running statistics of the encoder on normal images (data-dependent init).

        A randomly initialised ResNet has running means 0 and variances 1, so its BatchNorm layers do nothing and
        activations drift in scale and offset from layer to layer. One pass over the normal training images with
        BatchNorm in training mode (cumulative averages, no parameter changes) makes every layer's pre-activations
        zero-mean and unit-variance on the data, as in a trained network. Done once before training; the teacher
        is in eval mode before and after, and its parameters never change.

        Args:
            batches: Normalised image batches on the teacher's device.

        Returns:
            Number of images seen.
        """
        norms = [m for m in self.encoder.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        momenta = [m.momentum for m in norms]
        for norm in norms:
            norm.reset_running_stats()
            norm.momentum = None  # cumulative moving average over all batches
            nn.Module.train(norm, True)
        seen = 0
        try:
            for images in batches:
                self.encoder(images)
                seen += images.shape[0]
        finally:
            for norm, momentum in zip(norms, momenta, strict=True):
                norm.momentum = momentum
            super().train(False)
        if seen == 0:
            raise ValueError("recalibrate_batchnorm got no images; pass at least one batch of normal images.")
        return seen

    def describe(self) -> WeightsInfo:
        """Where the weights came from."""
        return self.weights_info
