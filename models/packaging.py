"""A trained model as a directory: a JSON description plus a ``weights_only`` state dict.

The format needs nothing from the training process to load: the JSON names the model kind and holds the
architecture configuration and any calibration (thresholds, normalisation); ``weights.pt`` is read with
``torch.load(..., weights_only=True)``, so loading never unpickles code. The JSON also records the SHA-256 of
``weights.pt`` (``weights_sha256``), so a damaged or replaced weights file is refused instead of loaded.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from models.errors import DefectflowError

FORMAT_VERSION = 1
DESCRIPTION_FILE = "defectflow_model.json"
WEIGHTS_FILE = "weights.pt"
WEIGHTS_DIGEST = "weights_sha256"

# kind -> function(config dict) -> nn.Module built *without* fetching pretrained weights.
Builder = Callable[[dict[str, Any]], nn.Module]


class DamagedWeights(DefectflowError, ValueError):
    """A model directory whose weights file is not the one saved with it; the message says what differs."""


def file_sha256(path: Path) -> str:
    """SHA-256 of a file's bytes, read in blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass
class ModelPackage:
    """What a model directory holds.

    Attributes:
        kind: ``"segmenter"`` or ``"detector"``.
        config: Architecture configuration, enough to rebuild the network.
        extra: Everything else that travels with the weights (calibration, training summary).
        path: The directory it was read from, if any.
        weights_sha256: SHA-256 of ``weights.pt`` when it was saved (``None`` for packages saved before it was
            recorded).
    """

    kind: str
    config: dict[str, Any]
    extra: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None
    weights_sha256: str | None = None


def save_model_package(
    directory: str | Path,
    kind: str,
    config: dict[str, Any],
    module: nn.Module,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write ``module``'s weights and its description into ``directory`` (created when missing)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to("cpu").contiguous() for k, v in module.state_dict().items()}
    torch.save(state, directory / WEIGHTS_FILE)
    return _describe(directory, kind, config, extra)


def _describe(directory: Path, kind: str, config: dict[str, Any], extra: dict[str, Any] | None) -> Path:
    """Write the description of the weights file already in ``directory``, with that file's digest."""
    description = {
        "kind": kind,
        "format_version": FORMAT_VERSION,
        "config": config,
        "extra": extra or {},
        WEIGHTS_DIGEST: file_sha256(directory / WEIGHTS_FILE),
    }
    (directory / DESCRIPTION_FILE).write_text(json.dumps(description, indent=2, sort_keys=True))
    return directory


def repackage(source: str | Path, target: str | Path, extra: dict[str, Any]) -> Path:
    """Copy the model in ``source`` to ``target`` with a new ``extra`` and the very same weights file.

    The weights are copied byte for byte, not re-saved, so both directories carry one SHA-256 for ``weights.pt``:
    a recalibrated model can be shown to be the same network as the one it came from.

    Raises:
        DamagedWeights: ``source``'s weights differ from its recorded digest (a damaged model is not copied on).
    """
    package = read_model_package(source)
    problem = weights_problem(source)
    if problem:
        raise DamagedWeights(f"{source}: {problem}; nothing was copied")
    target = Path(target)
    target.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(Path(source) / WEIGHTS_FILE, target / WEIGHTS_FILE)
    return _describe(target, package.kind, package.config, extra)


def read_model_package(directory: str | Path) -> ModelPackage:
    """Read the description of a model directory without loading weights."""
    directory = Path(directory)
    description_path = directory / DESCRIPTION_FILE
    if not description_path.is_file():
        raise FileNotFoundError(
            f"{directory} is not a defectflow model directory (no {DESCRIPTION_FILE}). Pass a directory written "
            "by 'defectflow train', or a registry URI such as models:/detector@champion."
        )
    description = json.loads(description_path.read_text())
    version = description.get("format_version")
    if version != FORMAT_VERSION:
        raise ValueError(
            f"{directory} uses model format {version}, this defectflow reads format {FORMAT_VERSION}. "
            "Retrain the model with this version, or install the defectflow version that wrote it."
        )
    return ModelPackage(
        kind=description["kind"],
        config=description["config"],
        extra=description.get("extra", {}),
        path=directory,
        weights_sha256=description.get(WEIGHTS_DIGEST),
    )


def weights_problem(directory: str | Path) -> str | None:
    """Why ``weights.pt`` of a model directory is not the file saved with it, or ``None`` when it is.

    Packages saved before the digest was recorded have nothing to check against and pass when the file exists.
    """
    package = read_model_package(directory)
    path = Path(directory) / WEIGHTS_FILE
    if not path.is_file():
        return f"{WEIGHTS_FILE} is missing"
    if package.weights_sha256 is None:
        return None
    actual = file_sha256(path)
    if actual == package.weights_sha256:
        return None
    return (
        f"{WEIGHTS_FILE} has sha256 {actual[:16]}..., not the {package.weights_sha256[:16]}... recorded when the "
        "model was saved (the file is damaged or was replaced)"
    )


def load_model_package(
    directory: str | Path, builders: dict[str, Builder], expected_kind: str | None = None
) -> tuple[nn.Module, ModelPackage]:
    """Rebuild the network described in ``directory`` and load its weights safely.

    Args:
        directory: A directory written by :func:`save_model_package`.
        builders: Map from model kind to a function that builds the bare network from its config.
        expected_kind: When given, a package of another kind is an error.

    Returns:
        The network in eval mode on the CPU, and its package description.

    Raises:
        DamagedWeights: ``weights.pt`` differs from the digest recorded when the package was saved.
    """
    package = read_model_package(directory)
    if expected_kind is not None and package.kind != expected_kind:
        raise ValueError(
            f"{directory} holds a {package.kind} model, but a {expected_kind} was expected. "
            f"Pass a {expected_kind} model (e.g. models:/{expected_kind}@champion)."
        )
    if package.kind not in builders:
        raise ValueError(f"unknown model kind {package.kind!r}; known kinds: {sorted(builders)}")
    problem = weights_problem(directory)
    if problem:
        raise DamagedWeights(f"{directory}: {problem}; load a good copy of the model (re-register or retrain it)")
    module = builders[package.kind](package.config)
    state = torch.load(Path(directory) / WEIGHTS_FILE, map_location="cpu", weights_only=True)
    module.load_state_dict(state, strict=True)
    module.eval()
    return module, package
