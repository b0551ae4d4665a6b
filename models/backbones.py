"""Pretrained-backbone loading shared by the segmenter encoder and the detector teacher.

Weights come from one of three places, chosen explicitly by the user so that nothing falls back silently:

* ``"timm"``: timm's pretrained weights (its cache, or a download where the machine can reach the hub);
* a path to a local file holding a state dict (a timm or torchvision checkpoint of the same architecture);
* ``"none"``: random initialisation, reported as such in the returned :class:`WeightsInfo`.

The default request, ``"pretrained"``, is turned into one of these by :func:`models.weight_sources.resolve_weights`
before a backbone is built.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import pickle
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import timm
import torch
from torch import nn

from models.packaging import file_sha256
from models.weight_sources import RANDOM_INIT, TIMM_PRETRAINED, timm_cached_file

logger = logging.getLogger(__name__)


@contextlib.contextmanager
def weights_to_be_replaced() -> Iterator[None]:
    """Silence the 'randomly initialised' warning while building a network whose weights a package load replaces.

    Loading a trained model builds the architecture with random weights first; warning about them there would
    tell an operator that a trained model is untrained.
    """
    previous = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(previous)


@dataclass(frozen=True)
class WeightsInfo:
    """Where a backbone's weights came from, for logs and MLflow params.

    Attributes:
        source: ``"random"``, ``"timm"`` or ``"file"``.
        detail: Human-readable description (file path and digest, timm model tag).
        pretrained: Whether the weights carry any pretraining at all.
    """

    source: str
    detail: str
    pretrained: bool

    def as_params(self, prefix: str) -> dict[str, str]:
        """Flat key/value pairs for experiment tracking."""
        return {
            f"{prefix}_weights": self.source,
            f"{prefix}_weights_detail": self.detail,
            f"{prefix}_pretrained": str(self.pretrained).lower(),
        }


def _file_digest(path: Path) -> str:
    return file_sha256(path)[:16]


def _extract_state_dict(obj: object, path: Path) -> dict[str, torch.Tensor]:
    if isinstance(obj, dict) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        return obj  # type: ignore[return-value]
    if isinstance(obj, dict):
        for key in ("state_dict", "model", "model_state_dict"):
            inner = obj.get(key)
            if isinstance(inner, dict):
                return _extract_state_dict(inner, path)
    raise ValueError(
        f"{path} does not hold a state dict of tensors. Save one with "
        "torch.save(model.state_dict(), PATH), or pass 'timm' or 'none' instead of a file."
    )


def load_weights_file(model: nn.Module, path: str | Path) -> WeightsInfo:
    """Load a local state dict into ``model``, keeping only keys the model has.

    A classifier head or keys of layers that ``features_only`` dropped are ignored; a file that matches nothing,
    or whose shapes disagree with the model, is an error rather than a silent random initialisation.

    Args:
        model: The backbone to load into (a timm ``features_only`` model or a plain timm model).
        path: File written by ``torch.save(state_dict)``; read with ``weights_only=True``.

    Returns:
        Description of the loaded weights.

    Raises:
        FileNotFoundError: When the file does not exist.
        ValueError: When the file holds no usable weights for this architecture.
    """
    path = Path(path).expanduser()
    source = _extract_state_dict(_read_weights(path), path)
    usable = _matching_weights(source, model.state_dict(), path)
    model.load_state_dict(usable, strict=False)
    return WeightsInfo(source="file", detail=f"{path} sha256:{_file_digest(path)}", pretrained=True)


def _read_weights(path: Path) -> object:
    """Load a PyTorch file with ``weights_only=True``, turning each failure into an error that says what to do.

    Raises:
        FileNotFoundError: When the file does not exist.
        ValueError: When it holds pickled objects other than tensors, or is not a readable PyTorch file.
    """
    if not path.is_file():
        raise FileNotFoundError(
            f"weights file {path} does not exist. Pass an existing state-dict file, 'timm' for timm's pretrained "
            "weights, or 'none' for random initialisation."
        )
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise ValueError(
            f"{path} is not a plain state dict: loading it with weights_only=True was refused because it holds "
            "pickled objects other than tensors. Re-save it with torch.save(model.state_dict(), PATH) from a "
            "trusted environment."
        ) from error
    except (RuntimeError, EOFError, OSError) as error:
        raise ValueError(
            f"{path} could not be read as a PyTorch file ({type(error).__name__}: {str(error)[:200]}); it may be "
            "truncated or damaged. Copy it again and check its sha256 against the source."
        ) from error


def _matching_weights(
    source: dict[str, torch.Tensor], target: dict[str, torch.Tensor], path: Path
) -> dict[str, torch.Tensor]:
    """The file's tensors the model has (``module.`` prefixes removed), checked to fill the whole model.

    Extra keys (a classifier head, layers ``features_only`` dropped) are ignored; a shape mismatch, no shared
    name, or a missing parameter is an error, so a wrong file never leaves layers silently random.

    Raises:
        ValueError: Naming the first mismatched or missing parameter.
    """
    usable: dict[str, torch.Tensor] = {}
    mismatched: list[str] = []
    for key, value in source.items():
        key = key.removeprefix("module.")
        if key in target:
            if target[key].shape == value.shape:
                usable[key] = value
            else:
                mismatched.append(f"{key}: file {tuple(value.shape)} vs model {tuple(target[key].shape)}")
    if mismatched:
        raise ValueError(
            f"{path} does not fit this backbone ({len(mismatched)} shape mismatches, first: {mismatched[0]}). "
            "Check that the file was saved from the same architecture."
        )
    if not usable:
        raise ValueError(
            f"{path} shares no parameter names with this backbone. Check that the file was saved from the same "
            "architecture (a timm or torchvision state dict)."
        )
    missing = [k for k in target if k not in usable and not k.endswith("num_batches_tracked")]
    if missing:
        raise ValueError(
            f"{path} lacks {len(missing)} of the backbone's parameters (first: {missing[0]}). "
            "Check that the file was saved from the same architecture."
        )
    return usable


def create_feature_extractor(
    name: str,
    out_indices: tuple[int, ...],
    weights: str = RANDOM_INIT,
    **timm_kwargs: object,
) -> tuple[nn.Module, WeightsInfo]:
    """Build a timm ``features_only`` backbone and fill its weights from the chosen source.

    Args:
        name: timm model name, e.g. ``"resnet18"``, ``"resnet50"``, ``"wide_resnet50_2"``.
        out_indices: Feature levels to return (timm numbering; 1 is stride 4 on ResNets).
        weights: ``"timm"``, ``"none"`` or a path to a local state-dict file.
        **timm_kwargs: Passed to ``timm.create_model`` (e.g. ``output_stride=16``).

    Returns:
        The backbone and a description of where its weights came from.

    Raises:
        RuntimeError: When ``"timm"`` is asked for and the weights are neither cached nor downloadable.
    """
    if weights == TIMM_PRETRAINED:
        cached = timm_cached_file(name)
        if cached is not None:  # no network call when timm's cache already holds the weights
            timm_kwargs = {**timm_kwargs, "pretrained_cfg_overlay": {"file": str(cached)}}
        try:
            model = timm.create_model(name, pretrained=True, features_only=True, out_indices=out_indices, **timm_kwargs)
        except Exception as error:  # network errors come in many types, all mean the same to the user
            raise RuntimeError(
                f"could not load timm's pretrained weights for {name!r} ({type(error).__name__}: {error}). "
                "This machine may have no access to the model hub: download the weights elsewhere, save "
                "them with torch.save(model.state_dict(), PATH) and pass that PATH, or pass 'none' to train "
                "from random initialisation."
            ) from error
        detail = f"timm:{name}" + (f" cached {cached} sha256:{_file_digest(cached)}" if cached is not None else "")
        return model, WeightsInfo(source="timm", detail=detail, pretrained=True)

    model = timm.create_model(name, pretrained=False, features_only=True, out_indices=out_indices, **timm_kwargs)
    if weights in (RANDOM_INIT, "", None):
        logger.warning("backbone %s is randomly initialised (weights='none'): no pretrained features", name)
        return model, WeightsInfo(source="random", detail=f"{name} random initialisation", pretrained=False)
    return model, load_weights_file(model, weights)


def feature_levels(name: str, strides: tuple[int, ...], **timm_kwargs: object) -> tuple[int, ...]:
    """timm ``features_only`` indices of ``name`` whose outputs have the given strides, in the order asked.

    ResNets, MobileNets and EfficientNets number their levels differently (a stride-2 stem level or not); asking
    by stride makes any timm CNN usable wherever those strides exist.

    Raises:
        ValueError: When the model gives none of the features at one of the strides.
    """
    reductions = _feature_reductions(name, tuple(sorted(timm_kwargs.items())))
    indices: list[int] = []
    for stride in strides:
        if stride not in reductions:
            raise ValueError(
                f"{name!r} gives features at strides {list(reductions)}, not at {stride}; the detector needs strides "
                f"{list(strides)}. Use a CNN such as resnet18, wide_resnet50_2, mobilenetv2_100 or efficientnet_b0."
            )
        indices.append(reductions.index(stride))
    return tuple(indices)


@functools.lru_cache(maxsize=32)
def _feature_reductions(name: str, timm_kwargs: tuple[tuple[str, object], ...]) -> tuple[int, ...]:
    """Strides of every ``features_only`` level of ``name`` (builds the model once per process)."""
    probe = timm.create_model(name, pretrained=False, features_only=True, **dict(timm_kwargs))
    return tuple(probe.feature_info.reduction())
