"""The MLflow model registry: which model version scores tonight.

A model version's artifacts are a defectflow model directory (``models.packaging``: JSON description plus a
``weights_only`` state dict), so loading one needs nothing from the training process and unpickles no code.
Aliases carry the decisions: ``challenger`` (newly trained), ``champion`` (scores the shifts), ``previous`` (the
champion before the last promotion, for rollback).

Each version carries the SHA-256 of every file of its model directory as tags (``sha256/<file>``), taken when it
was registered; a version whose files no longer match is refused by name and version (:class:`DamagedModel`) instead
of being handed to scoring.
"""

from __future__ import annotations

import re
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from models.errors import DefectflowError
from storage.frame_files import sha256_of
from storage.settings import Settings
from storage.tracking import client

CHAMPION = "champion"
CHALLENGER = "challenger"
PREVIOUS = "previous"
#: Version tag of a champion that was rolled back: promotion never brings it back.
ROLLED_BACK = "rolled_back"
MODEL_ARTIFACT_PATH = "model"
DIGEST_TAG = "sha256/"  # + file name: that file's SHA-256 when the version was registered
_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[^/]+)|/(?P<version>\d+))$")


class ModelNotFound(DefectflowError, LookupError):
    """A model URI that names nothing in the registry; the message says which command creates it."""


class RegistryUnavailable(DefectflowError, RuntimeError):
    """The MLflow registry could not be read (store locked, server down, damaged database): not "no model"."""


#: MLflow error codes that mean "no such model or alias"; any other failure is an outage, not an absence.
_ABSENT = ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE")


class DamagedModel(DefectflowError, ValueError):
    """A registered version whose files differ from the digests recorded at registration; the message names the
    version and the ways out."""


@dataclass(frozen=True)
class ResolvedModel:
    """A model ready to load: its local directory and where it came from."""

    local_dir: Path
    uri: str
    name: str | None = None
    version: str | None = None

    @property
    def label(self) -> str:
        """Short text for tables and logs: ``detector v3`` or the local path."""
        return f"{self.name} v{self.version}" if self.version else str(self.local_dir)


def _hint(name: str) -> str:
    return (
        f"train one with 'defectflow train {name} --data DIR' (it becomes {name}@{CHALLENGER}) and promote it with "
        f"'defectflow promote --model {name}'"
    )


def register_model_dir(
    settings: Settings, name: str, run_id: str, tags: dict[str, str] | None = None, alias: str | None = CHALLENGER
) -> str:
    """Register the model directory logged under ``model/`` of ``run_id`` as a new version of ``name``.

    Returns:
        The new version number, as a string.
    """
    absent = _registered_model(settings, name) is None
    mlflow_client = client(settings)
    if absent:
        mlflow_client.create_registered_model(name)
    version = mlflow_client.create_model_version(
        name, source=f"runs:/{run_id}/{MODEL_ARTIFACT_PATH}", run_id=run_id, tags=tags or {}
    )
    if alias:
        mlflow_client.set_registered_model_alias(name, alias, version.version)
    return str(version.version)


def package_digests(directory: Path) -> dict[str, str]:
    """Version tags with the SHA-256 of each file of a model directory (pass them to :func:`register_model_dir`)."""
    return file_digests([path for path in sorted(directory.iterdir()) if path.is_file()])


def file_digests(files: list[Path]) -> dict[str, str]:
    """Version tags with the SHA-256 of each of ``files`` (``sha256/<file name>``)."""
    return {f"{DIGEST_TAG}{path.name}": sha256_of(path) for path in files}


def add_version_files(settings: Settings, name: str, version: str, files: list[Path], tags: dict[str, str]) -> None:
    """Add ``files`` to the model directory of a registered version, each with its own digest tag.

    The version's other files and their digest tags are left as they were. The files are uploaded before their
    tags are set, so a reader in between sees files nothing vouches for yet (unchecked, as for a version
    registered before digests), never a tag whose file is missing.

    Args:
        settings: Workspace settings.
        name: Registered model name.
        version: Its version.
        files: Files to put beside the version's files (same names there).
        tags: More version tags to set once the files are in.

    Raises:
        ValueError: For a version whose files are not a run's ``model/`` folder (not registered by defectflow).
    """
    mlflow_client = client(settings)
    found = mlflow_client.get_model_version(name, version)
    if found.source != f"runs:/{found.run_id}/{MODEL_ARTIFACT_PATH}":
        raise ValueError(
            f"{name} v{version} points at {found.source}, not at a run's {MODEL_ARTIFACT_PATH}/ folder; only versions "
            "registered by defectflow can have files added"
        )
    for path in files:
        mlflow_client.log_artifact(found.run_id, str(path), artifact_path=MODEL_ARTIFACT_PATH)
    for key, value in {**file_digests(files), **tags}.items():
        mlflow_client.set_model_version_tag(name, version, key, value)


def _digest_problem(directory: Path, tags: dict[str, str]) -> str | None:
    """Which file of a downloaded version differs from its registered digest, or ``None``.

    Versions registered before digests were recorded have none to check and pass.
    """
    for key, expected in sorted(tags.items()):
        if not key.startswith(DIGEST_TAG):
            continue
        name = key[len(DIGEST_TAG) :]
        path = directory / name
        if not path.is_file():
            return f"{name} is missing"
        actual = sha256_of(path)
        if actual != expected:
            return (
                f"{name} has sha256 {actual[:16]}..., not the {expected[:16]}... recorded when the version was "
                "registered (the file is damaged or was replaced)"
            )
    return None


def alias_version(settings: Settings, name: str, alias: str) -> str | None:
    """Version that ``name@alias`` points to, or ``None`` when the model or the alias does not exist.

    Raises:
        RegistryUnavailable: When the registry cannot be read; an outage must not read as "no champion".
    """
    from mlflow.exceptions import MlflowException

    try:
        return str(client(settings).get_model_version_by_alias(name, alias).version)
    except MlflowException as error:
        if error.error_code in _ABSENT:
            return None
        raise _unavailable(settings, f"{name}@{alias}", error) from error
    except Exception as error:  # the store's own errors: sqlite locked or damaged, connection refused
        raise _unavailable(settings, f"{name}@{alias}", error) from error


def _registered_model(settings: Settings, name: str) -> Any | None:
    """The registered model ``name``, or ``None`` when it does not exist.

    Raises:
        RegistryUnavailable: When the registry cannot be read; an outage must not read as "no such model".
    """
    from mlflow.exceptions import MlflowException

    try:
        return client(settings).get_registered_model(name)
    except MlflowException as error:
        if error.error_code in _ABSENT:
            return None
        raise _unavailable(settings, name, error) from error
    except Exception as error:  # the store's own errors: sqlite locked or damaged, connection refused
        raise _unavailable(settings, name, error) from error


def _unavailable(settings: Settings, what: str, error: Exception) -> RegistryUnavailable:
    return RegistryUnavailable(
        f"could not read {what} from the MLflow registry at {settings.tracking_uri}: {error}. Check that the "
        "tracking store is reachable (MLFLOW_TRACKING_URI, the server, or the workspace's mlflow.db) and run the "
        "command again."
    )


def restore_previous(settings: Settings, name: str) -> tuple[str, str | None]:
    """Point ``name@champion`` back at ``name@previous``; the demoted version is tagged ``rolled_back``.

    Returns:
        The restored version and the demoted one (``None`` when there was no champion).

    Raises:
        ModelNotFound: When there is no ``previous`` version to go back to.
    """
    previous = alias_version(settings, name, PREVIOUS)
    if previous is None:
        raise ModelNotFound(f"{name} has no '{PREVIOUS}' version to roll back to (nothing was promoted over another)")
    demoted = alias_version(settings, name, CHAMPION)
    mlflow_client = client(settings)
    set_alias(settings, name, CHAMPION, previous)
    mlflow_client.delete_registered_model_alias(name, PREVIOUS)
    if demoted:
        mlflow_client.set_model_version_tag(name, demoted, ROLLED_BACK, "true")
    return previous, demoted


def set_alias(settings: Settings, name: str, alias: str, version: str) -> None:
    """Point ``name@alias`` at ``version``."""
    client(settings).set_registered_model_alias(name, alias, version)


def version_tags(settings: Settings, name: str, version: str) -> dict[str, str]:
    """Tags of one model version."""
    return dict(client(settings).get_model_version(name, version).tags)


def list_versions(settings: Settings, name: str) -> list[dict[str, Any]]:
    """All versions of ``name`` with their aliases, oldest first."""
    model = _registered_model(settings, name)
    if model is None:
        return []
    mlflow_client = client(settings)
    aliases: dict[str, list[str]] = {}
    for alias, version in (model.aliases or {}).items():
        aliases.setdefault(str(version), []).append(alias)
    versions = mlflow_client.search_model_versions(f"name='{name}'")
    rows = [
        {
            "version": str(v.version),
            "aliases": sorted(aliases.get(str(v.version), [])),
            "run_id": v.run_id,
            "weights": weights_provenance(v.tags or {}),
        }
        for v in versions
    ]
    return sorted(rows, key=lambda row: int(row["version"]))


def weights_provenance(tags: dict[str, str]) -> str:
    """Where a version's pretrained backbone weights came from (source, and file and digest where recorded)."""
    for role in ("teacher", "encoder"):
        detail = tags.get(f"{role}_weights_detail")
        if detail:
            return f"{tags.get(f'{role}_weights', '?')}: {detail}"
        if tags.get(f"{role}_weights"):
            return tags[f"{role}_weights"]
    return "unknown"


def version_weights(settings: Settings, name: str, version: str | None) -> str:
    """:func:`weights_provenance` of a registered version; ``"unknown"`` for a model directory (no version)."""
    if not version:
        return "unknown"
    return weights_provenance(version_tags(settings, name, version))


def _local_copy(settings: Settings, name: str, version: str, tags: dict[str, str]) -> Path:
    """The workspace's checked copy of a registered version's files, downloaded when missing or damaged.

    Each process downloads into its own staging folder and renames it into place, so workers that race here
    never see half a copy.

    Raises:
        DamagedModel: The registry's files differ from the digests recorded when the version was registered.
    """
    cache = settings.models_dir / "registry" / name / version
    if (cache / ".complete").is_file() and _digest_problem(cache, tags):  # the local copy was damaged: fetch again
        shutil.rmtree(cache, ignore_errors=True)
    if (cache / ".complete").is_file():
        return cache
    import mlflow

    staging = cache.with_name(f".{version}.{uuid.uuid4().hex}.partial")  # one per process: workers race here
    staging.mkdir(parents=True)
    mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{name}/{version}", dst_path=str(staging))
    problem = _digest_problem(staging, tags)
    if problem:
        shutil.rmtree(staging, ignore_errors=True)
        raise DamagedModel(
            f"{name} v{version} in the registry is damaged: {problem}. Nothing was scored with it: score with "
            f"another version (--{name} models:/{name}/<version>), put the previous champion back with "
            f"'defectflow rollback --model {name}' if v{version} is the champion, or train and promote a new "
            f"one ('defectflow train {name}')"
        )
    (staging / ".complete").touch()
    try:
        staging.rename(cache)
    except OSError:  # another process finished first; its copy is identical
        shutil.rmtree(staging, ignore_errors=True)
    if not (cache / ".complete").is_file():
        raise ModelNotFound(f"download of {name} v{version} into {cache} did not complete; run the command again")
    return cache


def resolve_model(settings: Settings, uri: str, kind: str) -> ResolvedModel:
    """Turn a model reference into a local model directory.

    Args:
        settings: Workspace settings (tracking URI and download cache).
        uri: ``models:/<name>@<alias>``, ``models:/<name>/<version>``, or a local model directory.
        kind: ``"segmenter"`` or ``"detector"``, for the error message.

    Raises:
        ModelNotFound: When the URI names no registered version or no directory.
        DamagedModel: When the version's files differ from the digests recorded when it was registered.
    """
    match = _URI.match(uri)
    if match is None:
        path = Path(uri).expanduser()
        if path.is_dir():
            return ResolvedModel(local_dir=path.resolve(), uri=str(path.resolve()))
        raise ModelNotFound(
            f"{uri!r} is neither a registry URI (models:/{kind}@champion, models:/{kind}/3) nor a model "
            f"directory; {_hint(kind)}"
        )
    name = match["name"]
    mlflow_client = client(settings)
    try:
        if match["alias"]:
            found = mlflow_client.get_model_version_by_alias(name, match["alias"])
        else:
            found = mlflow_client.get_model_version(name, match["version"])
    except Exception as error:
        from mlflow.exceptions import MlflowException

        if isinstance(error, MlflowException) and error.error_code in _ABSENT:
            found_nothing = f"no model version found for {uri} in {settings.tracking_uri}; {_hint(name)}"
            raise ModelNotFound(found_nothing) from error
        raise _unavailable(settings, uri, error) from error
    version, tags = str(found.version), dict(found.tags or {})
    cache = _local_copy(settings, name, version, tags)
    return ResolvedModel(local_dir=cache, uri=uri, name=name, version=version)
