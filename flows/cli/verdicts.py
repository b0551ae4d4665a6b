"""Commands on operator verdicts: ``verdicts export`` and ``recalibrate``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from flows.cli.base import (
    HomeOption,
    VerboseOption,
    app,
    console,
    error_console,
    fail,
    flow_command,
    print_table,
    run_local_flow,
    user_errors,
)

verdicts_app = typer.Typer(help="Operator verdicts on scored frames.", no_args_is_help=True)
app.add_typer(verdicts_app, name="verdicts")


@verdicts_app.command("export")
def export_verdicts(
    shift: Annotated[str, typer.Option("--shift", help="Shift whose verdicts to export.")],
    out: Annotated[
        Path | None, typer.Option("--out", help="File to write: .parquet, else CSV [default: CSV on stdout].")
    ] = None,
    home: HomeOption = None,
) -> None:
    """Every verdict recorded on a shift (its whole history, oldest first) with each frame's score and decision."""
    from storage.reviewed_frames import verdict_history
    from storage.settings import load_settings

    with user_errors():  # no flow, so none of flow_command's logging set-up: the table is read in a moment
        table = verdict_history(load_settings(home), shift)
    if out is None:
        typer.echo(table.to_csv(index=False), nl=False)
        return
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        if out.suffix.lower() == ".parquet":
            table.to_parquet(out, index=False)
        else:
            table.to_csv(out, index=False)
    except OSError as error:
        raise fail(f"cannot write {out}: {error}; choose another --out") from error
    error_console.print(f"{len(table)} verdicts of shift {shift} written to {out}", soft_wrap=True)


@app.command()
@flow_command
def recalibrate(
    model: Annotated[str, typer.Option("--model", help="The model to recalibrate: detector.")] = "detector",
    shifts: Annotated[
        list[str] | None, typer.Option("--shifts", help="Shifts whose verdicts to use (repeat) [default: all].")
    ] = None,
    home: HomeOption = None,
    verbose: VerboseOption = False,
) -> None:
    """Fit the champion detector's image threshold by F1 on reviewed frames; registers it as detector@challenger."""
    from flows.recalibration import check_recalibration
    from flows.recalibration import recalibrate as recalibrate_flow
    from storage.settings import load_settings

    check_recalibration(model, load_settings(home).ensure(), shifts)  # one line, not a failed run
    result = run_local_flow(recalibrate_flow, model=model, shifts=shifts, home=str(home) if home else None)
    print_table(
        f"detector v{result.version} registered as detector@challenger",
        [
            ("weights", f"detector v{result.source_version}'s (the champion), unchanged"),
            ("image threshold", f"{result.threshold:.6g} (was {result.previous_threshold:.6g})"),
            ("image F1 at the threshold", f"{result.image_f1:.4f}"),
            ("reviewed frames used", f"{result.defect} defect, {result.false_alarm} false alarm"),
            ("shifts", ", ".join(result.shifts)),
            ("skipped: scored by another version", result.skipped_other_version),
            ("skipped: no score", result.not_scored),
            ("unsure (ignored)", result.unsure),
            ("MLflow run", result.run_id),
        ],
    )
    console.print("next: 'defectflow promote --model detector' decides whether it scores the next shift")
