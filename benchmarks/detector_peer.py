"""The detector against the peer, anomalib's ``ReverseDistillationModel``: images/s at equal backbone, size and threads.

``benchmarks/detector.py --peer`` runs this (issue #14's headline goal: at least twice the peer, and at least 60 %
of the teacher-alone bound). Per configuration and thread count five calls take turns on the same batch, so a
neighbour's load hits all of them alike, and the median round counts
(:func:`models.detector.runtime_speed.interleaved_seconds`):

* ours, torch: ``ReverseDistillation.score`` (anomaly map and image score) in inference mode, BatchNorms folded and
  in the channels-last layout, as the workers run it (:func:`models.model_kinds.for_inference`);
* ours, ONNX Runtime: the same detector exported as ``defectflow export`` does, intra-op threads = torch's;
* the peer: ``ReverseDistillationModel`` in eval mode, which returns the anomaly map and the score (the map's
  maximum), as anomalib's inference calls it (its post-processing normalisation is left out, like our calibration);
* the peer prepared as ours is (``for_inference``: BatchNorms folded, channels-last; not what anomalib does, but
  what any user of it could), so that those gains are not counted as ours alone;
* the teacher alone, prepared the same way: the bound of any distillation detector on that backbone (a torch figure).

anomalib is not a dependency of defectflow: install it and the pure-Python packages its model import needs into a
separate folder (``pip install --no-deps --target DIR``) and put that folder on ``PYTHONPATH`` for this run only;
without it the peer's column says why it is missing and the rest is still measured. Weights are random on every
side (speed does not depend on them); nothing is downloaded.
"""

from __future__ import annotations

import copy
import os
import statistics
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from benchmarks.export import CONFIGS
from models.detector.builder import build_detector
from models.detector.config import DetectorConfig
from models.detector.network import ReverseDistillation
from models.detector.onnx_export import export_onnx
from models.detector.onnx_runtime import OnnxDetector, open_session
from models.detector.runtime_speed import interleaved_seconds
from models.model_kinds import INFERENCE_MEMORY_FORMAT, for_inference

PEER_LAYERS = {"resnet18": ("layer1", "layer2", "layer3"), "mobilenetv2_100": ("blocks.1", "blocks.2", "blocks.4")}
"""The peer's feature layers per backbone: the resnet ones are its recipe's; for another backbone, the timm blocks
at strides 4, 8 and 16, as our teacher taps them (the peer refuses it anyway: it has no decoder for it)."""

CALLS = ("torch", "onnx", "peer", "peer prepared", "teacher")


@dataclass
class PeerOptions:
    """What the comparison runs.

    Attributes:
        image_size: Input side, for every configuration.
        batch_sizes: Images per call.
        threads: Thread counts (torch's and ONNX Runtime's intra-op threads alike).
        rounds: Timed rounds per cell (the median counts).
        warmup: Untimed calls of each before the rounds.
        configs: Names from ``benchmarks.export.CONFIGS``.
    """

    image_size: int
    batch_sizes: list[int]
    threads: list[int]
    rounds: int
    warmup: int
    configs: list[str]


def load_peer() -> tuple[type[nn.Module] | None, str]:
    """anomalib's ``ReverseDistillationModel`` class and its version, or ``None`` and the import error."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import anomalib
            from anomalib.models.image.reverse_distillation.torch_model import ReverseDistillationModel
    except Exception as error:  # any import failure leaves the peer out, and the table says why
        return None, f"{type(error).__name__}: {error}"
    return ReverseDistillationModel, f"anomalib {anomalib.__version__}"


def build_peer(peer_class: type[nn.Module] | None, backbone: str, image_size: int) -> nn.Module | str:
    """The peer in eval mode with random weights, or why it could not be built for ``backbone``."""
    if peer_class is None:
        return "anomalib not importable"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            peer = peer_class(
                backbone=backbone,
                input_size=(image_size, image_size),
                layers=PEER_LAYERS.get(backbone, PEER_LAYERS["resnet18"]),
                anomaly_map_mode="add",  # the default of anomalib's ReverseDistillation (lightning model)
                pre_trained=False,
            )
    except Exception as error:  # the peer's own refusal (e.g. no decoder for the backbone) is the figure
        return f"{type(error).__name__}: {error}"
    return peer.eval()


def _calls(
    model: ReverseDistillation, onnx: OnnxDetector, peer: nn.Module | str, images: torch.Tensor
) -> dict[str, Callable[[], object]]:
    """The timed calls of one cell, each under inference mode; the peer is left out when it is a reason string.

    Ours and the teacher run as the workers do (:func:`for_inference`); the peer runs once as anomalib runs it
    and once prepared the same way, so the ratio can be read both ways.
    """
    channels_last = images.contiguous(memory_format=INFERENCE_MEMORY_FORMAT)

    def timed(forward: Callable[[torch.Tensor], object], batch: torch.Tensor) -> Callable[[], object]:
        def run() -> object:
            with torch.inference_mode():
                return forward(batch)

        return run

    calls = {
        "torch": timed(model.score, channels_last),
        "onnx": timed(onnx.score, images),
        "teacher": timed(model.teacher, channels_last),
    }
    if isinstance(peer, nn.Module):
        calls["peer"] = timed(peer, images)
        calls["peer prepared"] = timed(for_inference(copy.deepcopy(peer)), channels_last)
    return {name: calls[name] for name in CALLS if name in calls}


def _cell(
    model: ReverseDistillation, path: Path, peer: nn.Module | str, threads: int, batch: int, options: PeerOptions
) -> dict[str, float]:
    """Median images/s of each call at ``threads`` threads (torch's and ONNX Runtime's intra-op threads alike)."""
    torch.set_num_threads(threads)
    size = model.config.image_size
    images = torch.randn(batch, 3, size, size)
    onnx = OnnxDetector(open_session(path, threads), size)
    seconds = interleaved_seconds(_calls(model, onnx, peer, images), options.rounds, options.warmup)
    return {name: batch / statistics.median(times) for name, times in seconds.items()}


def _ratio(numerator: float | None, denominator: float | None, percent: bool = False) -> str:
    """A ratio cell, blank when a side is missing."""
    if not numerator or not denominator:
        return "n/a"
    return f"{numerator / denominator:.0%}" if percent else f"{numerator / denominator:.2f}"


def _row(name: str, config: DetectorConfig, threads: int, batch: int, ips: dict[str, float]) -> str:
    """One table row: images/s of the calls, then ours against the peer (both layouts) and against the bound."""
    peer = ips.get("peer")
    figures = " | ".join(f"{ips[key]:.1f}" if key in ips else "n/a" for key in CALLS)
    ratios = " | ".join(
        [
            _ratio(ips["torch"], peer),
            _ratio(ips["torch"], ips.get("peer prepared")),
            _ratio(ips["onnx"], peer),
            _ratio(ips["torch"], ips["teacher"], percent=True),
            _ratio(ips["onnx"], ips["teacher"], percent=True),
        ]
    )
    return f"| {name} {config.backbone} | {threads} | {batch} | {figures} | {ratios} |"


def _print_configuration(
    name: str, config: DetectorConfig, peer_class: type[nn.Module] | None, options: PeerOptions
) -> str | None:
    """Export one configuration once, print a row per batch size and thread count; why the peer is missing, if so."""
    model = build_detector(config, load_pretrained=False).eval()
    peer = build_peer(peer_class, config.backbone, config.image_size)
    with tempfile.TemporaryDirectory() as scratch:
        path = export_onnx(model, Path(scratch) / "detector.onnx")
        model = for_inference(model)  # as the workers run it; the teacher-alone bound is timed in it too
        for batch in options.batch_sizes:
            for threads in options.threads:
                ips = _cell(model, path, peer, threads, batch, options)
                print(_row(name, config, threads, batch, ips), flush=True)
    return None if isinstance(peer, nn.Module) else f"peer skipped for {config.backbone}: {peer}"


def run_peer_comparison(options: PeerOptions) -> int:
    """Measure every configuration against the peer and the bound; print a Markdown table (then the skips)."""
    import onnxruntime

    peer_class, peer_version = load_peer()
    print(
        f"detector against the peer: {options.image_size} px, CPU fp32, median of {options.rounds} interleaved "
        f"rounds (ours torch, ours ONNX Runtime, peer, teacher); torch {torch.__version__}, onnxruntime "
        f"{onnxruntime.__version__}, peer: {peer_version}; load average at start {os.getloadavg()[0]:.2f}"
    )
    print(
        "| configuration | threads | batch | ours torch img/s | ours ORT img/s | peer img/s | peer prepared img/s "
        "| teacher alone img/s | torch / peer | torch / peer prepared | ORT / peer | torch / teacher | ORT / teacher |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    notes = [
        _print_configuration(name, CONFIGS[name](options.image_size), peer_class, options) for name in options.configs
    ]
    for note in notes:
        if note:
            print(note)
    print(f"load average at end {os.getloadavg()[0]:.2f}")
    return 0
