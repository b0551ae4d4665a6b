"""Flow ``nightly_scoring``: two-stage scoring of an ingested shift over Dask.

Stage 1 segments each frame and crops it to the component; stage 2 scores the crop with the reverse-distillation
detector. Batches of frames are Prefect tasks on the ``DaskTaskRunner``; the flow keeps only small records.
"""

from __future__ import annotations

import contextlib
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from prefect import flow, get_run_logger

from flows.batching import batches
from flows.overlay_allowance import OverlayAllowance
from flows.progress import track_batches
from flows.results import ScoringResult
from flows.runtime import default_task_runner, flow_client, import_in_background, preload_on_workers
from models.errors import DefectflowError, TryAgainLater
from storage.ids import validate_shift_id
from storage.registry import version_weights
from storage.report import REPORT_FILE, write_report
from storage.score_parts import consolidate
from storage.scoring_run import ScoringRun, write_scoring_run
from storage.settings import Settings, load_settings
from storage.shift_lock import shift_lock
from storage.tables import (
    FINISHED,
    SCORE_COLUMNS,
    SCORES_FILE,
    FrameStatus,
    ScoreRecord,
    ScoreStatus,
    read_manifest,
    write_scores,
)
from storage.tracking import EXPERIMENT_SCORING, log_artifact, log_metrics, log_params, tracked_run
from tasks.model_preload import ModelPreload
from tasks.model_ref import ModelRef, pin_model
from tasks.plots import histogram_plot
from tasks.render_overlays import render_overlays
from tasks.score_frames import score_frames
from tasks.scoring_phases import add_seconds

DEFAULT_SEGMENTER = "models:/segmenter@champion"
DEFAULT_DETECTOR = "models:/detector@champion"
#: What the finish step imports (MLflow logging, the score histogram), loaded while the workers score; pyplot
#: itself is left to the step, which picks its display-free backend first.
FINISH_IMPORTS = ("mlflow", "matplotlib")
#: The report shows overlays of the highest scores, and of the flagged frames (highest first) up to a limit.
TOP_OVERLAYS = 10
FLAGGED_OVERLAY_LIMIT = 200
#: Overlays the finish step draws per task, spread over the workers.
OVERLAY_CHUNK = 8
OVERLAY_FOLDER = "overlays"


class NothingToScore(DefectflowError, ValueError):
    """No ingested shift, or a shift without frames; the message says which command fixes it."""


class SchedulerLost(TryAgainLater, RuntimeError):
    """The Dask scheduler went away during a run; finished batches are kept and the message says what to do."""


def _scheduler_lost(error: BaseException) -> bool:
    """Whether a batch's error is the loss of the Dask scheduler rather than a failure of the batch itself."""
    from distributed.client import FutureCancelledError
    from distributed.comm.core import CommClosedError

    if isinstance(error, FutureCancelledError):
        return error.reason == "scheduler-connection-lost"
    return isinstance(error, CommClosedError)


def latest_shift(settings: Settings) -> str:
    """The most recently ingested shift of the workspace (for the scheduled deployment)."""
    manifests = sorted(settings.results_root.glob("*/manifest.parquet"), key=lambda p: p.stat().st_mtime)
    if not manifests:
        raise NothingToScore(f"no shift has been ingested in {settings.home}; run 'defectflow ingest SRC --shift ID'")
    return manifests[-1].parent.name


def _gpu_annotation() -> contextlib.AbstractContextManager[Any]:
    """Dask resource annotation ``GPU=1`` when the cluster's workers declare a GPU resource, else nothing.

    When the scheduler cannot be asked, the batches go to any worker and the run's log says so: a GPU cluster then
    scores on whichever workers take them, which is slower but not wrong.
    """
    try:
        import dask

        client = flow_client()
        workers = client.scheduler_info(n_workers=-1)["workers"].values() if client else []
        if any(w.get("resources", {}).get("GPU") for w in workers):
            return dask.annotate(resources={"GPU": 1})
    except Exception as error:
        get_run_logger().warning(
            "could not ask the Dask scheduler which workers declare a GPU (%s: %s); the scoring batches may run "
            "on any worker",
            type(error).__name__,
            error,
        )
    return contextlib.nullcontext()


def _first_line(error: BaseException, limit: int = 300) -> str:
    """The first line of an error's message, cut to ``limit`` characters, for a one-line warning."""
    return (str(error).strip().splitlines() or [""])[0][:limit]


def _failed_rows(image_ids: list[str], error: BaseException | None, refs: tuple[ModelRef | None, ModelRef]) -> list:
    reason = f"batch failed after retries: {type(error).__name__}: {error}" if error else "batch failed"
    versions = (refs[0].version if refs[0] else None, refs[1].version)
    return [ScoreRecord(i, ScoreStatus.FAILED, reason[:500], *versions).row() for i in image_ids]


def _log_run(
    settings: Settings,
    shift_id: str,
    scores: pd.DataFrame,
    refs: tuple[ModelRef | None, ModelRef],
    seconds: float,
    new_frames: int,
    overlays: list[str],
    workers: int,
) -> tuple[str | None, str | None]:
    """Log the run to MLflow; returns its run id (``None`` if none was created) and what was not logged, if any.

    Scores, heatmaps and the report do not depend on MLflow: a store that is locked or unreachable costs the run's
    record there, not the shift, and the caller says so.
    """
    segmenter, detector = refs
    values = scores.loc[scores["status"] == ScoreStatus.SCORED, "score"].astype(float).to_numpy()
    metrics = _run_metrics(scores, values, seconds, new_frames)
    pending = ["params", "metrics", "score histogram", "top overlays", "run status"]
    run_id: str | None = None
    try:
        with tracked_run(settings, EXPERIMENT_SCORING, run_name=f"score-{shift_id}") as run:
            run_id = run.info.run_id
            log_params(
                {
                    "shift_id": shift_id,
                    "segmenter_uri": segmenter.uri if segmenter else "none (one-stage)",
                    "segmenter_version": segmenter.version if segmenter else None,
                    "detector_uri": detector.uri,
                    "detector_version": detector.version,
                    "cluster_workers": workers,
                    "frames_scored_this_run": new_frames,
                }
            )
            pending.remove("params")
            log_metrics(metrics)
            pending.remove("metrics")
            with tempfile.TemporaryDirectory() as scratch:
                histogram = histogram_plot(
                    Path(scratch) / "score_histogram.png", values, "normalised image score", f"shift {shift_id}", 0.5
                )
                log_artifact(histogram)
            pending.remove("score histogram")
            for path in overlays:
                log_artifact(path, "top_overlays")
            pending.remove("top overlays")
        pending.remove("run status")
    except Exception as error:
        what = ", ".join(pending) if run_id else "the whole run"
        return run_id, f"{what} ({type(error).__name__}: {_first_line(error)})"
    return run_id, None


def _run_metrics(scores: pd.DataFrame, values: np.ndarray, seconds: float, new_frames: int) -> dict[str, Any]:
    """The run's MLflow metrics: counts per status, flag rate, throughput and score percentiles (of ``values``, the
    scored frames' normalised scores)."""
    scored = scores[scores["status"] == ScoreStatus.SCORED]
    metrics: dict[str, Any] = {
        "images": len(scores),
        "scored": len(scored),
        "flagged": int(scored["is_anomalous"].astype(bool).sum()),
        "flag_rate": float(scored["is_anomalous"].astype(bool).mean()) if len(scored) else 0.0,
        "no_component": int((scores["status"] == ScoreStatus.NO_COMPONENT).sum()),
        "failed": int((scores["status"] == ScoreStatus.FAILED).sum()),
        "images_per_second": new_frames / seconds if seconds > 0 else 0.0,
        "seconds": seconds,
    }
    if len(values):
        for q in (50, 95, 99):
            metrics[f"score_p{q}"] = float(np.percentile(values, q))
    return metrics


@flow(name="nightly_scoring", log_prints=True, task_runner=default_task_runner())
def nightly_scoring(
    shift_id: str | None = None,
    segmenter: str = DEFAULT_SEGMENTER,
    detector: str = DEFAULT_DETECTOR,
    home: str | None = None,
    batch_size: int = 8,
    one_stage: bool = False,
    rescore: bool = False,
    workers: int | None = None,
) -> ScoringResult:
    """Score a shift's frames, write heatmaps and scores, log the run to MLflow and write the report.

    Args:
        shift_id: Shift to score; ``None`` scores the most recently ingested one.
        segmenter: Stage-1 model URI (``models:/segmenter@champion``, a version, or a model directory).
        detector: Stage-2 model URI.
        home: Workspace directory.
        batch_size: Frames per Dask task.
        one_stage: Skip segmentation and score whole frames (for comparison).
        rescore: Score frames that already have a score.
        workers: Cluster size recorded in MLflow (the task runner decides the real one).

    Returns:
        Summary with counts, throughput, paths and the MLflow run id.
    """
    settings = load_settings(home).ensure()
    shift_id = validate_shift_id(shift_id) if shift_id else latest_shift(settings)
    with shift_lock(settings.home, shift_id, "score"):
        return _score_shift(settings, shift_id, segmenter, detector, batch_size, one_stage, rescore, workers)


@dataclass
class _Plan:
    """What one scoring run works on: the shift's frames, the pinned models, and the frames still to score."""

    results_dir: Path
    image_ids: list[str]
    refs: tuple[ModelRef | None, ModelRef]
    weights: dict[str, str]
    todo: list[str]


def _score_shift(
    settings: Settings,
    shift_id: str,
    segmenter: str,
    detector: str,
    batch_size: int,
    one_stage: bool,
    rescore: bool,
    workers: int | None,
) -> ScoringResult:
    """The work of :func:`nightly_scoring`, done while the shift's lock is held."""
    logger = get_run_logger()
    started = time.perf_counter()
    plan = _plan(settings, shift_id, segmenter, detector, one_stage, rescore)
    planned = time.perf_counter()
    logger.info("shift %s: %d frames, %d to score", shift_id, len(plan.image_ids), len(plan.todo))
    import_in_background(*FINISH_IMPORTS)
    run = _run_batches(settings, shift_id, plan, batch_size)
    seconds = run.seconds
    scores = _collect(plan, run.failed)
    _raise_if_lost(run, shift_id, plan, scores)
    scored = scores[scores["status"] == ScoreStatus.SCORED].sort_values("score", ascending=False)
    paths = _render_overlays(settings, shift_id, plan.results_dir, scored, run.overlays)
    top_ids = set(scored.head(TOP_OVERLAYS)["image_id"])
    top_paths = [p for p in paths if Path(p).stem in top_ids]
    run_id, not_logged = _log_run(
        settings, shift_id, scores, plan.refs, seconds, len(plan.todo), top_paths, workers or 0
    )
    if run_id:
        write_scoring_run(plan.results_dir, ScoringRun(run_id, settings.tracking_uri))
    if not_logged:
        _warn_not_logged(settings, shift_id, not_logged)
    refs = plan.refs
    report = _report(settings, shift_id, plan, scores, paths, run_id, not_logged)
    summary = ScoringResult(
        shift_id=shift_id,
        frames=len(plan.image_ids),
        scored_this_run=len(plan.todo),
        scored=len(scored),
        flagged=int(scored["is_anomalous"].astype(bool).sum()),
        no_component=int((scores["status"] == ScoreStatus.NO_COMPONENT).sum()),
        failed=int((scores["status"] == ScoreStatus.FAILED).sum()),
        images_per_second=len(plan.todo) / seconds if seconds > 0 and plan.todo else 0.0,
        scores=str(plan.results_dir / SCORES_FILE),
        report=str(report),
        mlflow_run_id=run_id,
        mlflow_not_logged=not_logged,
        segmenter_version=refs[0].version if refs[0] else None,
        detector_version=refs[1].version,
        seconds=run.steps(planned - started, time.perf_counter() - planned),
        phase_seconds=run.phases,  # summed over the workers
    )
    logger.info("shift %s scored: %s", shift_id, asdict(summary))
    return summary


def _raise_if_lost(run: _Batches, shift_id: str, plan: _Plan, scores: pd.DataFrame) -> None:
    """End the run with :class:`SchedulerLost` when the scheduler went away; finished batches are in ``scores``."""
    if run.lost is None:
        return
    finished = int(scores["status"].isin(FINISHED).sum())
    raise SchedulerLost(
        f"the Dask scheduler went away while shift {shift_id} was scored ({type(run.lost).__name__}); "
        f"{finished} of {len(plan.image_ids)} frames are scored and kept. Check that the scheduler is running, "
        "then run the same command again: it scores only the frames without a score"
    )


def _warn_not_logged(settings: Settings, shift_id: str, not_logged: str) -> None:
    """Say what MLflow did not get, and that the same command logs it later without scoring again."""
    get_run_logger().warning(
        "shift %s: not logged to MLflow (%s): %s; scores, heatmaps and the report are written. Run the same "
        "command again when MLflow is reachable: it scores nothing again and logs the shift's run",
        shift_id,
        settings.tracking_uri,
        not_logged,
    )


def _report(
    settings: Settings,
    shift_id: str,
    plan: _Plan,
    scores: pd.DataFrame,
    overlay_paths: list[str],
    run_id: str | None,
    not_logged: str | None,
) -> Path:
    """The operator's page of the shift, with the models, their weights and what MLflow did not get."""
    refs = plan.refs
    return write_report(
        plan.results_dir / REPORT_FILE,
        shift_id,
        scores,
        {Path(p).stem: f"{OVERLAY_FOLDER}/{Path(p).name}" for p in overlay_paths},
        {
            "segmenter": refs[0].uri if refs[0] else "none (one-stage)",
            "detector": refs[1].uri,
            **plan.weights,
            "MLflow run": run_id or "none",
            **({"not logged to MLflow": not_logged} if not_logged else {}),
        },
    )


def _plan(settings: Settings, shift_id: str, segmenter: str, detector: str, one_stage: bool, rescore: bool) -> _Plan:
    """The shift's ingested frames, the models pinned for the whole run, and which frames still need a score."""
    results_dir = settings.results_dir(shift_id)
    manifest = read_manifest(results_dir)
    image_ids = sorted(manifest.loc[manifest["status"] == FrameStatus.INGESTED, "image_id"])
    if not image_ids:
        raise NothingToScore(f"shift {shift_id} has no ingested frames; run 'defectflow ingest SRC --shift {shift_id}'")
    refs = (
        None if one_stage else pin_model(settings, segmenter, "segmenter"),
        pin_model(settings, detector, "detector"),
    )
    weights = {  # read now: the registry may be out of reach by the time the report is written
        **({"segmenter weights": version_weights(settings, "segmenter", refs[0].version)} if refs[0] else {}),
        "detector weights": version_weights(settings, "detector", refs[1].version),
    }
    existing = consolidate(results_dir)
    done = set() if rescore else set(existing.loc[existing["status"].isin(FINISHED), "image_id"])
    return _Plan(results_dir, image_ids, refs, weights, [i for i in image_ids if i not in done])


@dataclass
class _Batches:
    """How the batches of a run went: the rows of those that failed, the error if the scheduler went away, the
    seconds taken (the preload's included, and apart), the seconds the workers spent per phase
    (:mod:`tasks.scoring_phases`) and the overlays of flagged frames the batches drew."""

    failed: list[dict[str, Any]]
    lost: BaseException | None
    seconds: float
    phases: dict[str, float]
    preload_seconds: float = 0.0
    overlays: list[str] = field(default_factory=list)

    def steps(self, plan: float, after_plan: float) -> dict[str, float]:
        """Wall seconds of the run's steps: plan, preload, batches, and finish (what came after the batches)."""
        batches = self.seconds - self.preload_seconds
        return {"plan": plan, "preload": self.preload_seconds, "batches": batches, "finish": after_plan - self.seconds}


def _run_batches(settings: Settings, shift_id: str, plan: _Plan, batch_size: int) -> _Batches:
    """Preload the models on the workers, then score the frames still to do in batches on Dask.

    Each finished batch has written its records as a part table (tasks/score_frames.py): the flow keeps only the
    rows of batches that failed. Submitting stops if the scheduler goes away; finished parts stay. The batches draw
    the overlays of their flagged frames, :data:`FLAGGED_OVERLAY_LIMIT` at most in all (:mod:`flows.overlay_allowance`).
    """
    allowance = OverlayAllowance(FLAGGED_OVERLAY_LIMIT)
    overlay_dir = str(plan.results_dir / OVERLAY_FOLDER)

    def score(chunk: list[str]) -> Any:
        allowed = allowance.give(chunk[0], len(chunk))
        return score_frames.submit(
            str(settings.store_path),
            str(plan.results_dir),
            shift_id,
            chunk,
            *plan.refs,
            overlay_dir=overlay_dir,
            max_overlays=allowed,
        )

    start = time.perf_counter()
    run = _Batches([], None, 0.0, {})
    with _gpu_annotation():
        try:
            if plan.todo:
                preload_on_workers(ModelPreload(*plan.refs))
                run.preload_seconds = time.perf_counter() - start
            for chunk, future in track_batches(score, batches(plan.todo, batch_size), "scoring", "frames"):
                try:
                    batch = future.result()
                    add_seconds(run.phases, batch.seconds)
                    run.overlays.extend(batch.overlays)
                    allowance.settle(chunk[0], len(batch.overlays))
                except Exception as error:
                    allowance.settle(chunk[0], 0)
                    if _scheduler_lost(error):  # not the batch's fault: its frames stay unscored for the re-run
                        run.lost = error
                        break
                    run.failed.extend(_failed_rows(chunk, error, plan.refs))  # after its retries; the rest goes on
        except Exception as error:  # preloading on, or submitting the next batch to, a scheduler that went away
            if not _scheduler_lost(error):
                raise
            run.lost = error
    run.seconds = time.perf_counter() - start
    return run


def _collect(plan: _Plan, failed: list[dict[str, Any]]) -> pd.DataFrame:
    """Merge the parts (including batches whose part was written but whose result never came back) and the failed
    rows into the shift's scores table, written once."""
    scores = consolidate(plan.results_dir)
    if failed:
        fresh = pd.DataFrame(failed, columns=SCORE_COLUMNS)
        scores = pd.concat([scores, fresh], ignore_index=True).drop_duplicates("image_id", keep="last")
    scores = scores[scores["image_id"].isin(plan.image_ids)]
    write_scores(plan.results_dir, scores)
    return scores


def _render_overlays(
    settings: Settings, shift_id: str, results_dir: Path, scored: pd.DataFrame, drawn: list[str]
) -> list[str]:
    """Overlays of the :data:`TOP_OVERLAYS` highest scores and of the flagged frames (at most
    :data:`FLAGGED_OVERLAY_LIMIT`, highest first), in that order.

    The batches drew most of them (``drawn``, this run's); the rest (frames scored by an earlier run, a top score
    that is not flagged, a flagged frame over a batch's allowance) are drawn on the workers in chunks of
    :data:`OVERLAY_CHUNK`, reading frame and heatmap from the store. A drawn overlay the report does not show (more
    flagged frames than the limit) is removed: a run leaves no picture of its own that the report does not link.
    An overlay that cannot be drawn is left out with a warning; the report shows its frame without a picture.
    """
    flagged = scored[scored["is_anomalous"].astype(bool)]
    to_render = pd.concat([scored.head(TOP_OVERLAYS), flagged.head(FLAGGED_OVERLAY_LIMIT)])
    records = to_render.drop_duplicates("image_id").to_dict("records")
    wanted = [record["image_id"] for record in records]
    paths = {Path(path).stem: path for path in drawn}
    for image_id in set(paths) - set(wanted):
        Path(paths.pop(image_id)).unlink(missing_ok=True)
    missing = [record for record in records if record["image_id"] not in paths]
    out_dir = str(results_dir / OVERLAY_FOLDER)
    submitted = [
        (chunk, render_overlays.submit(str(settings.store_path), shift_id, chunk, out_dir))
        for chunk in batches(missing, OVERLAY_CHUNK)
    ]
    for chunk, future in submitted:
        try:
            paths.update((Path(path).stem, path) for path in future.result())
        except Exception as error:  # the pictures are lost, not the shift: scores and heatmaps are written
            get_run_logger().warning(
                "shift %s: overlays of %s not drawn (%s: %s); the report shows them without a picture. Once the "
                "cause is fixed, 'defectflow score --shift %s' draws them (it scores nothing again)",
                shift_id,
                ", ".join(record["image_id"] for record in chunk),
                type(error).__name__,
                _first_line(error),
                shift_id,
            )
    return [paths[image_id] for image_id in wanted if image_id in paths]
