"""Which runtime is faster for one package on this machine: images/s of torch and ONNX Runtime, measured fairly.

Both run the same preprocessed batch through :func:`models.detector.inference.score_images` (the scoring call,
outputs copied to numpy), with the same thread count. The rounds alternate between the runtimes and the median
round counts, so a neighbour's burst of load on a shared machine hits both alike instead of deciding the race.
"""

from __future__ import annotations

import copy
import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from functools import partial

import torch

from models.detector.inference import score_images
from models.model_kinds import AnomalyDetector, for_inference


@dataclass
class RuntimeSpeed:
    """Images/s of both runtimes on one batch.

    Attributes:
        torch_images_per_s: Torch, float32, inference mode.
        onnx_images_per_s: ONNX Runtime, CPU execution provider.
        threads: Intra-op threads both used.
        batch: Images per call.
        image_size: Input side.
        rounds: Timed calls per runtime (the median counts).
    """

    torch_images_per_s: float
    onnx_images_per_s: float
    threads: int
    batch: int
    image_size: int
    rounds: int

    @property
    def faster(self) -> str:
        """``"onnx"`` when ONNX Runtime was faster, else ``"torch"`` (a tie keeps torch)."""
        return "onnx" if self.onnx_images_per_s > self.torch_images_per_s else "torch"

    def to_dict(self) -> dict[str, object]:
        """JSON-ready figures."""
        return asdict(self)


def interleaved_seconds(
    calls: Mapping[str, Callable[[], object]], rounds: int, warmup: int = 1
) -> dict[str, list[float]]:
    """Seconds of each call in ``rounds`` rounds where the calls take turns (A B C A B C ...), after ``warmup`` each.

    Taking turns spreads a neighbour's burst of load over every call instead of deciding one call's figure, so
    the ratios between the calls stay fair on a shared machine.
    """
    for call in calls.values():
        for _ in range(warmup):
            call()
    seconds: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(rounds):
        for name, call in calls.items():
            start = time.perf_counter()
            call()
            seconds[name].append(time.perf_counter() - start)
    return seconds


def measure_speed(
    torch_detector: AnomalyDetector, onnx_detector: AnomalyDetector, images: torch.Tensor, rounds: int = 3
) -> RuntimeSpeed:
    """Images/s of both detectors on ``images`` (one warm-up call each, then ``rounds`` alternating timed calls).

    Torch is timed on a copy prepared as workers run it (:func:`models.model_kinds.for_inference`); the caller's
    model is left as it was.
    """
    detectors = {"torch": for_inference(copy.deepcopy(torch_detector)), "onnx": onnx_detector}
    seconds = interleaved_seconds(
        {name: partial(score_images, model, images) for name, model in detectors.items()}, rounds
    )
    per_s = {name: len(images) / statistics.median(times) for name, times in seconds.items()}
    return RuntimeSpeed(
        torch_images_per_s=per_s["torch"],
        onnx_images_per_s=per_s["onnx"],
        threads=torch.get_num_threads(),
        batch=len(images),
        image_size=int(images.shape[-1]),
        rounds=rounds,
    )
