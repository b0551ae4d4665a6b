"""Where a backbone's pretrained weights come from: one rule for the detector's teacher and the segmenter's encoder.

Pretrained features are the normal case (the paper and anomalib both start from ImageNet weights). A user asks
for ``"pretrained"`` (the default everywhere), and :func:`resolve_weights` turns that into a concrete source,
trying in this order:

1. a file setting naming one state-dict file (``DEFECTFLOW_TEACHER_WEIGHTS`` / ``DEFECTFLOW_ENCODER_WEIGHTS``);
2. a folder setting (``DEFECTFLOW_WEIGHTS_DIR``) holding ``<timm name>.pth`` files, for air-gapped plants that
   copy weights in once (``<timm name>-<tag>.pth`` is accepted too when it is the only match);
3. timm: its local cache, or its model hub where the machine reaches it.

An explicit choice (a file path, ``"timm"``, or ``"none"`` for random initialisation) skips the search. When
nothing can deliver, :class:`WeightsUnavailableError` says so and lists the three ways out, before any work
starts. Settings are read by ``storage.settings`` and passed in, so this module stays free of configuration.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from models.errors import DefectflowError

#: Random initialisation: no pretrained features (said in the logs and the MLflow params).
RANDOM_INIT = "none"
#: timm's own pretrained weights, from its cache or its hub.
TIMM_PRETRAINED = "timm"
#: The default request: find pretrained weights through the settings, the weights folder, then timm.
PRETRAINED = "pretrained"

#: Seconds to wait for the model hub's host before calling it unreachable (offline plants fail fast).
HUB_PROBE_TIMEOUT_S = 3.0


class WeightsUnavailableError(DefectflowError, RuntimeError):
    """No source can deliver pretrained weights for a backbone; the message lists the ways out."""


@dataclass(frozen=True)
class WeightSettings:
    """The settings that :func:`resolve_weights` consults, for one role (teacher or encoder).

    Attributes:
        file: Value of the role's file setting, if set.
        file_setting: Name of that setting, for messages (``DEFECTFLOW_TEACHER_WEIGHTS``...).
        folder: Value of the weights-folder setting, if set.
        folder_setting: Name of that setting, for messages.
    """

    file: str | None = None
    file_setting: str = "DEFECTFLOW_TEACHER_WEIGHTS"
    folder: Path | None = None
    folder_setting: str = "DEFECTFLOW_WEIGHTS_DIR"


def describe_choice(value: str) -> str:
    """One line saying what a weights choice means, for ``--help`` texts and logs."""
    if value == RANDOM_INIT:
        return "none: random initialisation (no pretrained features; anomaly scores rest on random features)"
    if value == PRETRAINED:
        return "pretrained: the weights setting, then the weights folder, then timm's cache or hub"
    if value == TIMM_PRETRAINED:
        return "timm: timm's pretrained weights from its cache or hub"
    return f"the state-dict file {value}"


def folder_weights(folder: Path, backbone: str) -> Path | None:
    """The file for ``backbone`` in a weights folder: ``<backbone>.pth``, else a single ``<backbone>-*.pth``.

    Raises:
        WeightsUnavailableError: When several ``<backbone>-*.pth`` files match and none is ``<backbone>.pth``.
    """
    exact = folder / f"{backbone}.pth"
    if exact.is_file():
        return exact
    tagged = sorted(p for p in folder.glob(f"{backbone}-*.pth") if p.is_file())
    if len(tagged) > 1:
        names = ", ".join(p.name for p in tagged)
        raise WeightsUnavailableError(
            f"the weights folder {folder} holds several files for {backbone} ({names}); keep one, or name the one "
            f"to use {backbone}.pth"
        )
    return tagged[0] if tagged else None


def timm_cached_file(backbone: str) -> Path | None:
    """timm's locally cached weights for ``backbone`` (Hugging Face cache, then torch hub cache), if any."""
    import timm.models

    try:
        config = timm.models.get_pretrained_cfg(backbone)
    except Exception:  # unknown names or tags: no cached weights to find
        return None
    if config is None:
        return None
    if config.hf_hub_id:
        from huggingface_hub import try_to_load_from_cache

        repo, _, revision = config.hf_hub_id.partition("@")
        for filename in filter(None, (config.hf_hub_filename, "model.safetensors", "pytorch_model.bin")):
            cached = try_to_load_from_cache(repo, filename, revision=revision or None)
            if isinstance(cached, str) and Path(cached).is_file():
                return Path(cached)
    if config.url:
        import torch.hub

        candidate = Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(config.url).path).name
        if candidate.is_file():
            return candidate
    return None


def hub_reachable(timeout: float = HUB_PROBE_TIMEOUT_S) -> bool:
    """Whether timm's model hub answers a TCP connection (``False`` at once with ``HF_HUB_OFFLINE`` set)."""
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
        return False
    host = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname or "huggingface.co"
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False


def _ways_out(backbone: str, role: str, settings: WeightSettings) -> str:
    flag = "--teacher-weights" if role == "teacher" else "--encoder-weights"
    return (
        f"Three ways out: (1) pass {flag} PATH, a state-dict file of timm's {backbone!r} "
        f"(or set {settings.file_setting}=PATH); (2) copy the file to a folder as {backbone}.pth and set "
        f"{settings.folder_setting}=FOLDER; (3) run once on a machine that reaches the Hugging Face hub so that "
        f"timm caches the weights. Or pass {flag} none to train on random features, knowing that they are not "
        "pretrained."
    )


def resolve_weights(requested: str | None, backbone: str, role: str, settings: WeightSettings) -> str:
    """Turn a weights request into a concrete source: a file path, ``"timm"`` or ``"none"``.

    Args:
        requested: ``"pretrained"`` (or ``None``/empty, the same), ``"timm"``, ``"none"`` or a file path.
        backbone: timm model name the weights are for.
        role: ``"teacher"`` or ``"encoder"`` (names the flag in messages).
        settings: The file and folder settings to consult for ``"pretrained"``.

    Returns:
        The source to build the backbone from; a path is returned absolute.

    Raises:
        WeightsUnavailableError: When the request cannot be met; the message lists the ways out.
    """
    requested = (requested or PRETRAINED).strip()
    if requested == RANDOM_INIT:
        return RANDOM_INIT
    if requested not in (PRETRAINED, TIMM_PRETRAINED):
        path = Path(requested).expanduser()
        if not path.is_file():
            raise WeightsUnavailableError(f"weights file {path} does not exist. " + _ways_out(backbone, role, settings))
        return str(path.resolve())
    if requested == PRETRAINED:
        if settings.file:
            path = Path(settings.file).expanduser()
            if not path.is_file():
                raise WeightsUnavailableError(
                    f"{settings.file_setting}={settings.file} names no file. Point it at a state-dict file, or "
                    "unset it."
                )
            return str(path.resolve())
        if settings.folder is not None:
            folder = Path(settings.folder).expanduser()
            if not folder.is_dir():
                raise WeightsUnavailableError(
                    f"{settings.folder_setting}={settings.folder} is not a folder. Point it at the folder that "
                    f"holds <timm name>.pth files, or unset it."
                )
            found = folder_weights(folder, backbone)
            if found is not None:
                return str(found.resolve())
    if timm_cached_file(backbone) is not None or hub_reachable():
        return TIMM_PRETRAINED
    where = "in timm's cache, and the model hub cannot be reached"
    if requested == PRETRAINED:
        checked = [f"{settings.file_setting} is not set"]
        if settings.folder is not None:
            checked.append(f"{settings.folder_setting}={settings.folder} holds no {backbone}.pth")
        else:
            checked.append(f"{settings.folder_setting} is not set")
        where = f"({'; '.join(checked)}), none {where}"
    raise WeightsUnavailableError(
        f"no pretrained weights for the {role} {backbone!r} {where}. " + _ways_out(backbone, role, settings)
    )
