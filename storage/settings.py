"""Workspace settings, in one place.

A workspace is a directory (``--home``, environment ``DEFECTFLOW_HOME``, default ``./defectflow-home``) holding:

* ``store.zarr/``: frames and heatmaps, one group per shift, unless ``DEFECTFLOW_STORE_URL`` puts them elsewhere
  (an object store: any fsspec URL zarr opens);
* ``results/<shift>/``: manifest, scores and the operator report of each shift;
* ``mlflow.db`` and ``mlartifacts/``: the embedded MLflow store, unless ``MLFLOW_TRACKING_URI`` is set.

Every other setting is an environment variable with a documented default (README, "Settings"), so the same code
runs on a workstation and on a Prefect worker pool with a multi-node Dask cluster: only the environment changes.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from models.errors import DefectflowError

DEFAULT_HOME = "defectflow-home"
DEFAULT_MAX_PIXELS = 200_000_000
TEACHER_WEIGHTS_SETTING = "DEFECTFLOW_TEACHER_WEIGHTS"
ENCODER_WEIGHTS_SETTING = "DEFECTFLOW_ENCODER_WEIGHTS"
WEIGHTS_DIR_SETTING = "DEFECTFLOW_WEIGHTS_DIR"
TORCH_THREADS_SETTING = "DEFECTFLOW_TORCH_THREADS"
PROGRESS_SETTING = "DEFECTFLOW_PROGRESS"
REVIEW_TOKEN_SETTING = "DEFECTFLOW_REVIEW_TOKEN"
MLFLOW_UI_SETTING = "DEFECTFLOW_MLFLOW_UI"
DEFAULT_MLFLOW_UI = "http://127.0.0.1:5000"
MIN_REVIEW_TOKEN_LENGTH = 16
DETECTOR_RUNTIME_SETTING = "DEFECTFLOW_DETECTOR_RUNTIME"
#: Defaults of the promotion gate and the dashboard: one place, read by the dataclass and by ``load_settings``.
DEFAULT_GUARD_TOLERANCE = 0.02
DEFAULT_FLOOR_IMAGE_AUROC = 0.90
DEFAULT_FLOOR_MIOU = 0.80
DEFAULT_DASK_DASHBOARD = ":0"
STORE_URL_SETTING = "DEFECTFLOW_STORE_URL"
#: The zarr store of frames and heatmaps inside the workspace, when ``DEFECTFLOW_STORE_URL`` is not set.
DEFAULT_STORE = "store.zarr"
#: ``auto``: a CPU worker runs a package's ONNX export when the speeds measured at export chose it.
DETECTOR_RUNTIMES = ("auto", "torch", "onnx")


class SettingsError(DefectflowError, ValueError):
    """A setting has a value defectflow cannot use; the message says which and how to fix it."""


def _env_int(name: str, default: int | None) -> int | None:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError as error:
        example = f"e.g. {default}" if default else "a positive whole number"
        raise SettingsError(f"{name}={raw!r} is not a whole number; set it to {example} or unset it") from error
    if value <= 0:
        example = f"e.g. {default}" if default else "a positive whole number"
        raise SettingsError(f"{name}={raw!r} must be positive; set it to {example} or unset it")
    return value


def _env_float(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        return float(raw)
    except ValueError as error:
        raise SettingsError(f"{name}={raw!r} is not a number; set it to e.g. {default}") from error


@dataclass(frozen=True)
class Settings:
    """Resolved settings of one workspace.

    Attributes:
        home: Workspace directory.
        tracking_uri: MLflow tracking URI (embedded SQLite store in the workspace unless overridden).
        artifact_root: Where the embedded MLflow store keeps artifacts.
        dask_address: Address of an existing Dask scheduler; ``None`` starts a ``LocalCluster``.
        dask_workers: Worker processes of the ``LocalCluster`` (ignored with an address).
        max_pixels: Frames whose header declares more pixels are refused before decoding.
        eval_data: Fixed evaluation set (MVTec AD layout) for retraining and promotion, if configured.
        guard_tolerance: How far a guard metric may fall before a promotion is refused.
        floor_image_auroc: Minimum image AUROC of a first detector champion.
        floor_miou: Minimum mIoU of a first segmenter champion.
        teacher_weights: State-dict file for the detector's teacher when a command asks for pretrained weights
            (``DEFECTFLOW_TEACHER_WEIGHTS``).
        encoder_weights: The same for the segmenter's encoder (``DEFECTFLOW_ENCODER_WEIGHTS``).
        weights_dir: Folder of ``<timm name>.pth`` files consulted next (``DEFECTFLOW_WEIGHTS_DIR``), for
            air-gapped plants that copy pretrained weights in once.
        dask_dashboard: Dashboard address of the ``LocalCluster`` (``DEFECTFLOW_DASK_DASHBOARD``; ``:0`` picks a
            free port).
        review_token: The review app's access token (``DEFECTFLOW_REVIEW_TOKEN``): required to serve on any
            address but loopback, and then asked of every request.
        mlflow_ui: Where the review app links a shift's MLflow run (``DEFECTFLOW_MLFLOW_UI``; default the tracking
            server when it is one, else ``mlflow ui``'s own address).
        store_url: Where frames and heatmaps live when not in the workspace (``DEFECTFLOW_STORE_URL``): an fsspec
            URL such as ``s3://bucket/defectflow/store.zarr`` or ``file:///shared/store.zarr``, or a folder.
    """

    home: Path
    tracking_uri: str
    artifact_root: Path
    dask_address: str | None = None
    dask_workers: int | None = None
    max_pixels: int = DEFAULT_MAX_PIXELS
    eval_data: Path | None = None
    seg_eval_data: Path | None = None
    guard_tolerance: float = DEFAULT_GUARD_TOLERANCE
    floor_image_auroc: float = DEFAULT_FLOOR_IMAGE_AUROC
    floor_miou: float = DEFAULT_FLOOR_MIOU
    teacher_weights: str | None = None
    encoder_weights: str | None = None
    weights_dir: Path | None = None
    dask_dashboard: str = DEFAULT_DASK_DASHBOARD
    review_token: str | None = None
    mlflow_ui: str = DEFAULT_MLFLOW_UI
    store_url: str | None = None
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def store_path(self) -> Path | str:
        """The zarr store of frames and heatmaps, as :class:`storage.frame_store.FrameStore` and every task take it.

        The one rule for where it is: ``DEFECTFLOW_STORE_URL`` (a ``str`` for an fsspec URL, which code reaches
        through ``FrameStore`` only), else the workspace's ``store.zarr`` folder (a ``Path``).
        """
        if self.store_url is None:
            return self.home / DEFAULT_STORE
        return self.store_url if "://" in self.store_url else Path(self.store_url)

    @property
    def results_root(self) -> Path:
        """Parent of the per-shift results folders."""
        return self.home / "results"

    def results_dir(self, shift_id: str) -> Path:
        """Manifest, scores and report of one shift."""
        return self.results_root / shift_id

    @property
    def verdicts_path(self) -> Path:
        """The operators' verdict log (:mod:`storage.verdicts`)."""
        from storage.verdicts import VERDICTS_FILE

        return self.home / VERDICTS_FILE

    @property
    def models_dir(self) -> Path:
        """Local scratch space for model packages before they go to MLflow."""
        return self.home / "models"

    def ensure(self) -> Settings:
        """Create the workspace directories and check that they can be written; returns ``self`` for chaining.

        Raises:
            SettingsError: The workspace cannot be created or written (read-only, permissions, a file in the way).
        """
        try:
            self.home.mkdir(parents=True, exist_ok=True)
            self.results_root.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryFile(dir=self.results_root):
                pass
        except OSError as error:
            raise SettingsError(
                f"workspace {self.home} is not writable ({error.strerror or error}); "
                "pass a writable --home (or DEFECTFLOW_HOME) or fix its permissions"
            ) from error
        return self


def load_settings(home: str | os.PathLike[str] | None = None) -> Settings:
    """Resolve the settings from arguments and the environment.

    Args:
        home: Workspace directory; falls back to ``DEFECTFLOW_HOME``, then ``./defectflow-home``.

    Returns:
        The settings, with an absolute ``home``.
    """
    home_path = Path(home or os.environ.get("DEFECTFLOW_HOME") or DEFAULT_HOME).expanduser().resolve()
    if home_path.exists() and not home_path.is_dir():
        raise SettingsError(
            f"workspace {home_path} exists and is not a directory; pass another --home (or DEFECTFLOW_HOME)"
        )
    tracking_uri = os.environ.get("MLFLOW_TRACKING_URI", "").strip() or f"sqlite:///{home_path / 'mlflow.db'}"
    eval_data = os.environ.get("DEFECTFLOW_EVAL_DATA", "").strip()
    seg_eval_data = os.environ.get("DEFECTFLOW_SEG_EVAL_DATA", "").strip()
    weights_dir = os.environ.get(WEIGHTS_DIR_SETTING, "").strip()
    worker_torch_threads()  # read by the workers; checked here too, so that a bad value stops a command at once
    detector_runtime()
    return Settings(
        home=home_path,
        tracking_uri=tracking_uri,
        artifact_root=home_path / "mlartifacts",
        dask_address=os.environ.get("DEFECTFLOW_DASK_ADDRESS", "").strip() or None,
        dask_workers=_env_int("DEFECTFLOW_WORKERS", None),
        max_pixels=_env_int("DEFECTFLOW_MAX_PIXELS", DEFAULT_MAX_PIXELS) or DEFAULT_MAX_PIXELS,
        eval_data=Path(eval_data).expanduser().resolve() if eval_data else None,
        seg_eval_data=Path(seg_eval_data).expanduser().resolve() if seg_eval_data else None,
        guard_tolerance=_env_float("DEFECTFLOW_GUARD_TOLERANCE", DEFAULT_GUARD_TOLERANCE),
        floor_image_auroc=_env_float("DEFECTFLOW_FLOOR_IMAGE_AUROC", DEFAULT_FLOOR_IMAGE_AUROC),
        floor_miou=_env_float("DEFECTFLOW_FLOOR_MIOU", DEFAULT_FLOOR_MIOU),
        teacher_weights=os.environ.get(TEACHER_WEIGHTS_SETTING, "").strip() or None,
        encoder_weights=os.environ.get(ENCODER_WEIGHTS_SETTING, "").strip() or None,
        weights_dir=Path(weights_dir).expanduser().resolve() if weights_dir else None,
        dask_dashboard=os.environ.get("DEFECTFLOW_DASK_DASHBOARD", "").strip() or DEFAULT_DASK_DASHBOARD,
        review_token=_review_token(),
        mlflow_ui=_mlflow_ui(tracking_uri),
        store_url=_store_url(),
    )


def _review_token() -> str | None:
    """``DEFECTFLOW_REVIEW_TOKEN``, refused when too short to guess-proof a plant network."""
    token = os.environ.get(REVIEW_TOKEN_SETTING, "").strip()
    if token and len(token) < MIN_REVIEW_TOKEN_LENGTH:
        raise SettingsError(
            f"{REVIEW_TOKEN_SETTING} has {len(token)} characters; use at least {MIN_REVIEW_TOKEN_LENGTH}, e.g. "
            "the output of: python -c 'import secrets; print(secrets.token_urlsafe(24))'"
        )
    return token or None


def _store_url() -> str | None:
    """``DEFECTFLOW_STORE_URL``: a folder (made absolute) or an fsspec URL whose filesystem is installed here.

    Raises:
        SettingsError: For a URL whose protocol fsspec does not know or whose package is not installed: checked
            when the settings load, so a command stops at once instead of failing on its first write.
    """
    raw = os.environ.get(STORE_URL_SETTING, "").strip().rstrip("/")
    if not raw:
        return None
    if "://" not in raw:
        return str(Path(raw).expanduser().resolve())
    from fsspec import get_filesystem_class
    from fsspec.registry import known_implementations

    protocol = raw.split("://", 1)[0].lower()
    known = known_implementations.get(protocol)
    try:
        get_filesystem_class(protocol)
    except ImportError as error:
        package = str((known or {}).get("class", protocol)).split(".")[0]
        raise SettingsError(
            f"{STORE_URL_SETTING}={raw!r} needs fsspec's {protocol!r} filesystem, which is not installed here "
            f"({(known or {}).get('err') or error}); install it with 'pip install {package}' on this machine and "
            "every Dask worker, or unset the setting to keep frames and heatmaps in the workspace"
        ) from error
    except ValueError as error:
        raise SettingsError(
            f"{STORE_URL_SETTING}={raw!r}: fsspec knows no {protocol!r} filesystem; use a URL such as "
            "s3://bucket/store.zarr (pip install s3fs), gs://bucket/store.zarr (gcsfs), az://container/store.zarr "
            "(adlfs) or file:///shared/store.zarr, or unset the setting"
        ) from error
    return raw


def _mlflow_ui(tracking_uri: str) -> str:
    """The MLflow UI's address: the setting, else a tracking server's own address, else ``mlflow ui``'s default."""
    configured = os.environ.get(MLFLOW_UI_SETTING, "").strip()
    if configured:
        return configured.rstrip("/")
    if tracking_uri.startswith(("http://", "https://")):
        return tracking_uri.rstrip("/")
    return DEFAULT_MLFLOW_UI


def worker_torch_threads() -> int | None:
    """Intra-op torch threads of a CPU worker process (``DEFECTFLOW_TORCH_THREADS``; ``None``: torch's default).

    Read on its own, not through :func:`load_settings`: a worker needs no workspace to know it.

    Raises:
        SettingsError: For a value that is not a positive whole number.
    """
    return _env_int(TORCH_THREADS_SETTING, None)


def detector_runtime() -> str:
    """What a CPU worker runs a detector with (``DEFECTFLOW_DETECTOR_RUNTIME``; default ``auto``).

    ``auto`` runs a package's ONNX export with ONNX Runtime when the speeds measured at export chose it, ``torch``
    and ``onnx`` override that choice (``onnx`` only for packages with an export; GPU workers always run torch).
    Read on its own, as :func:`worker_torch_threads`.

    Raises:
        SettingsError: For a value outside ``auto``, ``torch``, ``onnx``.
    """
    raw = os.environ.get(DETECTOR_RUNTIME_SETTING, "").strip().lower() or "auto"
    if raw not in DETECTOR_RUNTIMES:
        raise SettingsError(
            f"{DETECTOR_RUNTIME_SETTING}={raw!r} is not one of {', '.join(DETECTOR_RUNTIMES)}; set one or unset it"
        )
    return raw


def progress_forced() -> bool:
    """Whether progress bars are shown even when the output is not a terminal (``DEFECTFLOW_PROGRESS=1``)."""
    return os.environ.get(PROGRESS_SETTING, "").strip() == "1"
