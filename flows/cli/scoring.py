"""``defectflow score``: a shift through segmentation and detection on Dask."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape

from flows.cli.base import (
    DaskAddressOption,
    HomeOption,
    ModelHelp,
    VerboseOption,
    WorkersOption,
    app,
    check_model,
    console,
    flow_command,
    print_table,
    refuse_if_busy,
    run_flow,
)


@app.command()
@flow_command
def score(
    shift: Annotated[str | None, typer.Option("--shift", help="Shift to score [default: latest ingested].")] = None,
    segmenter: Annotated[str, typer.Option("--segmenter", help=ModelHelp)] = "models:/segmenter@champion",
    detector: Annotated[str, typer.Option("--detector", help=ModelHelp)] = "models:/detector@champion",
    dask_address: DaskAddressOption = None,
    workers: WorkersOption = None,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Frames per Dask task.")] = 8,
    one_stage: Annotated[bool, typer.Option("--one-stage", help="Skip segmentation; score whole frames.")] = False,
    rescore: Annotated[bool, typer.Option("--rescore", help="Score frames that already have a score.")] = False,
    home: HomeOption = None,
    verbose: VerboseOption = False,
) -> None:
    """Score a shift: segment, crop, detect (Prefect flow ``nightly_scoring`` on Dask)."""
    from flows.runtime import local_worker_count
    from flows.scoring import nightly_scoring
    from storage.settings import load_settings

    settings = load_settings(home).ensure()
    refuse_if_busy(settings, shift)
    if not one_stage:
        check_model(home, segmenter, "segmenter")
    check_model(home, detector, "detector")
    count = local_worker_count(settings, workers) if not (dask_address or settings.dask_address) else None
    summary = run_flow(
        nightly_scoring,
        settings,
        dask_address,
        workers,
        shift_id=shift,
        segmenter=segmenter,
        detector=detector,
        home=str(settings.home),
        batch_size=batch_size,
        one_stage=one_stage,
        rescore=rescore,
        workers=count,
    )
    print_table(
        f"shift {summary.shift_id} scored",
        [
            ("frames", summary.frames),
            ("scored this run", summary.scored_this_run),
            ("flagged", summary.flagged),
            ("no component", summary.no_component),
            ("failed", summary.failed),
            ("images/s", f"{summary.images_per_second:.2f}"),
            ("segmenter", summary.segmenter_version or "none (one-stage)"),
            ("detector", summary.detector_version),
            ("scores", summary.scores),
            ("report", summary.report),
            ("MLflow run", summary.mlflow_run_id or "none"),
        ],
    )
    if summary.mlflow_not_logged:
        console.print(
            f"[yellow]warning:[/] not logged to MLflow: {escape(summary.mlflow_not_logged)}. Scores, heatmaps "
            "and the report are written; run the same command again when MLflow is reachable to log the shift's run",
            soft_wrap=True,
        )
