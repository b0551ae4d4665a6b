"""Fitting the anomaly-map fusion weights on synthetic anomalies (method paper 3.2.2, "adaptive weights").

The paper learns the 1x1 fusion convolution but does not say on what data; real defects are usually not
available when a detector is trained. We fit it on synthetic anomalies (:mod:`models.anomaly_synthesis`) pasted
into normal training images, after the student is trained and with everything else frozen:

1. For ``n_images`` training images draw one synthetic anomaly each and compute the three smoothed per-level
   distance maps ``L_k`` (smoothing and the 1x1 fusion commute, so this is exact).
2. Fit a pixel-wise logistic model ``p = sigmoid(a * (sum_k w_k L_k - b))`` to the synthetic masks with a
   class-balanced binary cross-entropy (anomalous and normal pixels weigh half each, as anomalies cover a few
   percent of the image). ``w = softmax(v)`` keeps the weights non-negative and summing to one, so the fused map
   stays a convex combination of cosine distances (same units as the equal-weighted start); ``a > 0`` (as
   ``exp``) and ``b`` are a temporary logit affine that is discarded afterwards (the thresholds are calibrated
   later on the raw fused map, and the image score's ranking does not depend on ``a`` and ``b``).
3. Write ``w`` into the fusion convolution (bias 0).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass

import numpy as np
import torch
from torch.nn import functional as F

from models.anomaly_synthesis import AnomalySynthesizer, SynthesisConfig
from models.detector.network import ReverseDistillation
from models.imaging import imagenet_normalise
from models.metrics.anomaly import auroc

logger = logging.getLogger(__name__)

MAX_FIT_PIXELS = 100_000
#: Bound of the logistic fit's log-scale: exp(30) is 1e13, far beyond any useful sharpness, and finite. Unbounded,
#: an L-BFGS line search on well-separated maps could step the scale to inf, and ``inf * (x - b)`` at a target of 1
#: makes the cross-entropy NaN, which turned every fitted weight NaN (the rare CI failure of issue #10).
MAX_LOG_SCALE = 30.0


@dataclass
class FusionFitResult:
    """Outcome of :func:`fit_fusion_weights`.

    Attributes:
        weights: Fitted weights shallow to deep (non-negative, sum 1).
        loss_equal: Balanced BCE with equal weights (after fitting only ``a`` and ``b``).
        loss_fitted: Balanced BCE with the fitted weights.
        synthetic_pixel_auroc_equal: Pixel AUROC on the synthetic anomalies with equal weights.
        synthetic_pixel_auroc_fitted: Same with the fitted weights.
        n_images: Synthetic images used.
        seconds: Wall time.
    """

    weights: list[float]
    loss_equal: float
    loss_fitted: float
    synthetic_pixel_auroc_equal: float
    synthetic_pixel_auroc_fitted: float
    n_images: int
    seconds: float

    def to_dict(self) -> dict[str, object]:
        """JSON-ready summary."""
        return dict(self.__dict__)


@torch.inference_mode()
def synthetic_level_maps(
    model: ReverseDistillation,
    images: torch.Tensor,
    synthesizer: AnomalySynthesizer,
    batch_size: int,
    rng: np.random.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-level maps ``(N, 3, S, S)`` and synthetic masks ``(N, S, S)`` for anomalies pasted into ``images``."""
    model.eval()
    device = next(model.parameters()).device
    level_maps, masks = [], []
    for start in range(0, len(images), batch_size):
        anomalous, mask = synthesizer.batch(images[start : start + batch_size], rng)
        level_maps.append(model.level_maps(imagenet_normalise(anomalous).to(device)).float().cpu())
        masks.append(mask[:, 0])
    return torch.cat(level_maps), torch.cat(masks)


def _balanced_bce(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    positive = targets > 0.5
    loss = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    return 0.5 * loss[positive].mean() + 0.5 * loss[~positive].mean()


def _logits(
    features: torch.Tensor, weights: torch.Tensor, log_scale: torch.Tensor, offset: torch.Tensor
) -> torch.Tensor:
    """``exp(s) * (weights . x - b)`` with the scale bounded (:data:`MAX_LOG_SCALE`), so it stays finite."""
    return torch.exp(log_scale.clamp(-MAX_LOG_SCALE, MAX_LOG_SCALE)) * (features @ weights - offset)


def _fit_logistic(
    features: torch.Tensor, targets: torch.Tensor, fit_weights: bool, steps: int
) -> tuple[torch.Tensor, float]:
    """Fit ``sigmoid(exp(s) * (softmax(v) . x - b))`` with L-BFGS; returns the weights and the final loss."""
    levels = features.shape[1]
    v = torch.zeros(levels, requires_grad=fit_weights)
    fused0 = features.mean(dim=1)
    log_scale = torch.tensor(float(-torch.log(fused0.std() + 1e-6)), requires_grad=True)
    offset = torch.tensor(float(fused0.mean()), requires_grad=True)
    params = [log_scale, offset] + ([v] if fit_weights else [])
    optimiser = torch.optim.LBFGS(params, lr=1.0, max_iter=steps, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimiser.zero_grad()
        loss = _balanced_bce(_logits(features, torch.softmax(v, dim=0), log_scale, offset), targets)
        loss.backward()
        return loss

    optimiser.step(closure)
    with torch.no_grad():
        weights = torch.softmax(v, dim=0)
        loss = _balanced_bce(_logits(features, weights, log_scale, offset), targets)
    if not (bool(torch.isfinite(weights).all()) and math.isfinite(float(loss))):  # never registered as weights
        raise FloatingPointError(f"the fusion-weight fit gave non-finite values (weights {weights.tolist()})")
    return weights.detach(), float(loss)


def fit_fusion_weights(
    model: ReverseDistillation,
    images: torch.Tensor,
    n_images: int = 64,
    batch_size: int = 16,
    steps: int = 50,
    seed: int = 0,
    synthesis: SynthesisConfig | None = None,
) -> FusionFitResult:
    """Fit the 1x1 fusion weights on synthetic anomalies of normal images and write them into ``model``.

    Args:
        model: Trained detector (only its fusion weights change).
        images: Normal training images ``(N, 3, S, S)``, uint8 or float in [0, 1] (not normalised).
        n_images: How many synthetic anomalies to draw (one per image, images reused when fewer).
        batch_size: Images per forward pass.
        steps: L-BFGS iterations of the logistic fit.
        seed: Seed for image choice, anomaly synthesis and pixel subsampling.
        synthesis: Anomaly recipe mix.
    """
    start_time = time.perf_counter()
    rng = np.random.default_rng(seed)
    chosen = rng.choice(len(images), size=n_images, replace=n_images > len(images))
    synthesizer = AnomalySynthesizer(images, synthesis, seed=seed)
    level_maps, masks = synthetic_level_maps(model, images[torch.from_numpy(chosen)], synthesizer, batch_size, rng)
    if not bool(torch.isfinite(level_maps).all()):
        raise FloatingPointError(
            "the detector gives non-finite anomaly maps on synthetic anomalies, so its fusion weights cannot be "
            "fitted; the trained weights are unusable. Retrain with a lower learning rate (--lr)."
        )
    features, targets = _fit_pixels(level_maps, masks, rng)
    equal_weights, loss_equal = _fit_logistic(features, targets, fit_weights=False, steps=steps)
    weights, loss_fitted = _fit_weights_or_mean(features, targets, steps, loss_equal)
    _write_fusion_weights(model, weights)
    labels = targets.numpy() > 0.5
    return FusionFitResult(
        weights=[float(w) for w in weights],
        loss_equal=loss_equal,
        loss_fitted=loss_fitted,
        synthetic_pixel_auroc_equal=auroc(labels, (features @ equal_weights).numpy()),
        synthetic_pixel_auroc_fitted=auroc(labels, (features @ weights).numpy()),
        n_images=int(n_images),
        seconds=time.perf_counter() - start_time,
    )


def _fit_pixels(
    level_maps: torch.Tensor, masks: torch.Tensor, rng: np.random.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-pixel level features ``(P, levels)`` and targets ``(P,)``, class-balanced to :data:`MAX_FIT_PIXELS`.

    Subsampling bounds the L-BFGS cost; taking half anomalous and half normal pixels keeps the rare anomalous
    ones all in when they are few.

    Raises:
        RuntimeError: When the synthetic masks are all empty (nothing to fit against).
    """
    features = level_maps.permute(0, 2, 3, 1).reshape(-1, level_maps.shape[1]).clone()
    targets = masks.reshape(-1).clone()
    if targets.sum() == 0:
        raise RuntimeError("anomaly synthesis produced empty masks only; check the training images are not blank.")
    if len(targets) > MAX_FIT_PIXELS:
        positive = torch.nonzero(targets > 0.5).flatten().numpy()
        negative = torch.nonzero(targets <= 0.5).flatten().numpy()
        half = MAX_FIT_PIXELS // 2
        keep = np.r_[
            rng.choice(positive, size=min(half, len(positive)), replace=False),
            rng.choice(negative, size=min(half, len(negative)), replace=False),
        ]
        features, targets = features[torch.from_numpy(keep)], targets[torch.from_numpy(keep)]
    return features, targets


def _fit_weights_or_mean(
    features: torch.Tensor, targets: torch.Tensor, steps: int, loss_equal: float
) -> tuple[torch.Tensor, float]:
    """Fit the weights; if that fit goes non-finite, fall back to equal weights (what RD4AD uses)."""
    try:
        return _fit_logistic(features, targets, fit_weights=True, steps=steps)
    except FloatingPointError as error:
        logger.warning("%s; the anomaly maps are averaged with equal weights instead", error)
        return torch.full((features.shape[1],), 1.0 / features.shape[1]), loss_equal


def _write_fusion_weights(model: ReverseDistillation, weights: torch.Tensor) -> None:
    """Write ``weights`` into the model's 1x1 fusion convolution, bias 0, so the fused map is their convex sum."""
    with torch.no_grad():
        conv = model.anomaly_map_generator.fusion
        conv.weight.copy_(weights.view_as(conv.weight).to(conv.weight))
        conv.bias.zero_()
