"""Pixel anomaly map and image score (method paper section 3.2.2).

Per level the cosine distance map ``1 - cos(A_k, S_k)`` is upsampled bilinearly to the input size; the three
maps are fused by a 1x1 convolution (the paper's adaptive weights: 3 channels in, 1 out), initialised to equal
weights 1/3 and bias 0 so that the untrained fusion is the plain mean of the levels and the map stays in
cosine-distance units ``[0, 2]``. The fused map is smoothed by a Gaussian (sigma 4 as in RD4AD, kernel size
``2 * int(4 * sigma + 0.5) + 1`` = 33, reflect padding so borders are not darkened). The image score is the
maximum of the smoothed map: a mean would let a small defect drown in a large normal area (paper 3.2.2).

Because fusion (1x1) and smoothing (a normalised kernel) are both linear and commute, smoothing the three
per-level maps and then fusing gives the same map; :meth:`AnomalyMapGenerator.level_maps` uses that to let the
fusion weights be fitted on precomputed maps.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from models.detector.loss import cosine_distance_map


def gaussian_kernel_size(sigma: float) -> int:
    """Odd kernel size covering +-4 sigma (scipy's ``truncate=4`` convention), 1 for ``sigma == 0``."""
    return 2 * int(4.0 * sigma + 0.5) + 1


def gaussian_kernel1d(sigma: float) -> torch.Tensor:
    """Normalised 1-D Gaussian of :func:`gaussian_kernel_size` taps."""
    size = gaussian_kernel_size(sigma)
    if sigma == 0:
        return torch.ones(1)
    x = torch.arange(size, dtype=torch.float64) - size // 2
    kernel = torch.exp(-(x**2) / (2.0 * sigma**2))
    return (kernel / kernel.sum()).float()


class GaussianSmoothing(nn.Module):
    """Separable Gaussian blur of ``(N, C, H, W)`` maps with reflect padding (replicate for tiny maps).

    Args:
        sigma: Standard deviation in pixels; 0 disables smoothing.
    """

    def __init__(self, sigma: float) -> None:
        super().__init__()
        self.sigma = float(sigma)
        self.kernel_size = gaussian_kernel_size(self.sigma)
        self.register_buffer("kernel", gaussian_kernel1d(self.sigma), persistent=False)

    def forward(self, maps: torch.Tensor) -> torch.Tensor:
        """Smoothed maps, same shape."""
        if self.kernel_size == 1:
            return maps
        channels = maps.shape[1]
        pad = self.kernel_size // 2
        height, width = maps.shape[-2:]
        mode = "reflect" if pad < min(height, width) else "replicate"
        kernel = self.kernel.to(dtype=maps.dtype, device=maps.device)
        horizontal = kernel.view(1, 1, 1, -1).expand(channels, 1, 1, -1)
        vertical = kernel.view(1, 1, -1, 1).expand(channels, 1, -1, 1)
        out = F.conv2d(F.pad(maps, (pad, pad, 0, 0), mode=mode), horizontal, groups=channels)
        return F.conv2d(F.pad(out, (0, 0, pad, pad), mode=mode), vertical, groups=channels)


class AnomalyMapGenerator(nn.Module):
    """Teacher/student features → fused, smoothed ``(N, 1, H, W)`` anomaly map.

    Args:
        image_size: Side of the (square) network input; maps are upsampled to the input's actual size.
        sigma: Gaussian smoothing sigma in pixels.
        levels: Number of feature levels fused (3).
    """

    def __init__(self, image_size: int, sigma: float = 4.0, levels: int = 3) -> None:
        super().__init__()
        self.image_size = image_size
        self.levels = levels
        self.fusion = nn.Conv2d(levels, 1, kernel_size=1)
        self.reset_fusion()
        self.smoothing = GaussianSmoothing(sigma)

    @torch.no_grad()
    def reset_fusion(self, weights: tuple[float, ...] | None = None) -> None:
        """Set the fusion to ``weights`` (normalised to sum 1), or to the mean of the level maps; bias 0."""
        if weights is None:
            self.fusion.weight.fill_(1.0 / self.levels)
        else:
            values = torch.tensor(weights, dtype=self.fusion.weight.dtype)
            self.fusion.weight.copy_((values / values.sum()).view_as(self.fusion.weight))
        self.fusion.bias.zero_()

    def distance_maps(
        self, teacher: list[torch.Tensor], student: list[torch.Tensor], size: tuple[int, int] | None = None
    ) -> torch.Tensor:
        """Per-level cosine distances upsampled to ``size`` (default: the configured square), ``(N, L, H, W)``.

        Always computed in float32, also under bfloat16 autocast: the maps are small and their precision sets
        how finely image scores can be ranked and thresholded.
        """
        size = size or (self.image_size, self.image_size)
        device_type = teacher[0].device.type
        with torch.autocast(device_type=device_type, enabled=False):
            maps = [
                F.interpolate(
                    cosine_distance_map(t, s).unsqueeze(1),
                    size=size,
                    mode="bilinear",
                    align_corners=False,
                )
                for t, s in zip(teacher, student, strict=True)
            ]
        return torch.cat(maps, dim=1)

    def _fuse_and_smooth(self, maps: torch.Tensor, fuse: bool) -> torch.Tensor:
        with torch.autocast(device_type=maps.device.type, enabled=False):
            if fuse:
                maps = F.conv2d(maps, self.fusion.weight.float(), self.fusion.bias.float())
            return self.smoothing(maps)

    def level_maps(
        self, teacher: list[torch.Tensor], student: list[torch.Tensor], size: tuple[int, int] | None = None
    ) -> torch.Tensor:
        """Smoothed per-level maps ``(N, L, H, W)``; ``fusion(level_maps)`` equals :meth:`forward`."""
        return self._fuse_and_smooth(self.distance_maps(teacher, student, size), fuse=False)

    def forward(
        self, teacher: list[torch.Tensor], student: list[torch.Tensor], size: tuple[int, int] | None = None
    ) -> torch.Tensor:
        """Fused and smoothed anomaly map ``(N, 1, H, W)`` (float32)."""
        return self._fuse_and_smooth(self.distance_maps(teacher, student, size), fuse=True)

    @staticmethod
    def image_scores(maps: torch.Tensor) -> torch.Tensor:
        """Image score = maximum of each map: ``(N, 1, H, W)`` → ``(N,)``."""
        return maps.flatten(1).amax(dim=1)

    @property
    def fusion_weights(self) -> list[float]:
        """Current per-level weights (shallow to deep)."""
        return [float(w) for w in self.fusion.weight.detach().flatten()]

    def describe(self) -> dict[str, object]:
        """Summary for logs: weights, bias, sigma, kernel size."""
        return {
            "fusion_weights": self.fusion_weights,
            "fusion_bias": float(self.fusion.bias.detach()),
            "smoothing_sigma": self.smoothing.sigma,
            "smoothing_kernel_size": self.smoothing.kernel_size,
        }
