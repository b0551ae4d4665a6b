"""The ``defectflow`` command line: thin wrappers that validate input, run a flow and print a summary.

Input errors exit with code 2 and a message that says what to fix; every command takes ``--home``.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from flows.progress import enable_progress

app = typer.Typer(
    name="defectflow",
    help="Batch inspection of industrial components: ingest shifts, score them, train and promote models.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
synth_app = typer.Typer(help="Generate synthetic shifts and training sets.", no_args_is_help=True)
app.add_typer(synth_app, name="synth")

console = Console()
error_console = Console(stderr=True)

HomeOption = Annotated[
    Path | None,
    typer.Option("--home", envvar="DEFECTFLOW_HOME", help="Workspace directory [default: ./defectflow-home]."),
]
DaskAddressOption = Annotated[
    str | None,
    typer.Option(
        "--dask-address",
        envvar="DEFECTFLOW_DASK_ADDRESS",
        help="Existing Dask scheduler, e.g. tcp://host:8786 (default: start a LocalCluster).",
    ),
]
WorkersOption = Annotated[
    int | None,
    typer.Option("--workers", min=1, help="LocalCluster worker processes (default: cores / 2, >= 2)."),
]
VerboseOption = Annotated[bool, typer.Option("--verbose", "-v", help="Show Prefect's and Dask's INFO logs.")]


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print ``message`` as an error and return the exit to raise."""
    error_console.print(f"[bold red]error:[/] {message}", soft_wrap=True)
    return typer.Exit(code)


def _configure_logging(verbose: bool) -> None:
    """Keep the terminal to progress bars and summaries; Prefect's API still receives INFO logs for its UI."""
    level = "INFO" if verbose else "WARNING"
    os.environ["PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL"] = level  # inherited by Dask worker processes
    os.environ["PREFECT_LOGGING_HANDLERS_CONSOLE_FLOW_RUNS_LEVEL"] = level
    os.environ["PREFECT_LOGGING_HANDLERS_CONSOLE_TASK_RUNS_LEVEL"] = level
    from prefect.logging.handlers import PrefectConsoleHandler

    for logger in [logging.getLogger(), *logging.Logger.manager.loggerDict.values()]:
        for handler in getattr(logger, "handlers", []):
            if isinstance(handler, PrefectConsoleHandler):
                handler.setLevel(level)
    logging.getLogger("distributed").setLevel(logging.INFO if verbose else logging.WARNING)
    enable_progress(console.is_terminal or os.environ.get("DEFECTFLOW_PROGRESS") == "1")


def run_flow(flow: Any, settings: Any, address: str | None, workers: int | None, **parameters: Any) -> Any:
    """Run ``flow`` with a Dask task runner against the command's Prefect API."""
    from flows.runtime import dask_task_runner, prefect_api

    with prefect_api():
        runner = dask_task_runner(settings, address=address, workers=workers)
        return flow.with_options(task_runner=runner)(**parameters)


def print_table(title: str, rows: list[tuple[str, Any]]) -> None:
    """A two-column summary table."""
    table = Table(title=title, show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    for key, value in rows:
        table.add_row(key, str(value))
    console.print(table)


@synth_app.command("shift")
def synth_shift(
    out: Annotated[Path, typer.Argument(help="Folder to write frames/, labels.csv and masks/ into.")],
    images: Annotated[int, typer.Option("--images", min=1, help="Number of frames.")] = 20,
    size: Annotated[tuple[int, int], typer.Option("--size", help="Frame height and width.")] = (1536, 2048),
    defect_rate: Annotated[float, typer.Option("--defect-rate", min=0.0, max=1.0)] = 0.2,
    seed: Annotated[int, typer.Option("--seed")] = 0,
) -> None:
    """Generate a synthetic shift: frames of machined components on a conveyor, some with defects."""
    from synth.shift import generate_shift

    _configure_logging(False)
    from flows.progress import track

    try:
        with_bar = track(range(images), "generating", total=images, unit="frames")
        done = iter(with_bar)
        summary = generate_shift(
            out,
            images=images,
            size=tuple(size),
            defect_rate=defect_rate,
            seed=seed,
            progress=lambda _: next(done, None),
        )
        for _ in done:
            pass
    except ValueError as error:
        raise fail(str(error)) from error
    print_table(f"synthetic shift in {out}", [(k, v) for k, v in vars(summary).items()])


@synth_app.command("dataset")
def synth_dataset(
    out: Annotated[Path, typer.Argument(help="Folder to write mvtec/ and segmentation/ into.")],
    train_good: Annotated[int, typer.Option("--train-good", min=1)] = 200,
    test_good: Annotated[int, typer.Option("--test-good", min=1)] = 40,
    test_defect: Annotated[int, typer.Option("--test-defect", min=1, help="Test images per defect type.")] = 12,
    seg_images: Annotated[int, typer.Option("--seg-images", min=2)] = 80,
    size: Annotated[tuple[int, int], typer.Option("--size", help="Frame height and width.")] = (768, 1024),
    seed: Annotated[int, typer.Option("--seed")] = 0,
) -> None:
    """Generate training sets: component crops in the MVTec AD layout and a segmentation set."""
    from synth.dataset import generate_dataset

    _configure_logging(False)
    try:
        summary = generate_dataset(
            out,
            train_good=train_good,
            test_good=test_good,
            test_defect_per_type=test_defect,
            seg_images=seg_images,
            size=tuple(size),
            seed=seed,
        )
    except ValueError as error:
        raise fail(str(error)) from error
    print_table(f"synthetic training sets in {out}", [(k, v) for k, v in vars(summary).items()])


@app.command()
def ingest(
    src: Annotated[Path, typer.Argument(help="Folder of the shift's frames (read recursively).")],
    shift: Annotated[str, typer.Option("--shift", help="Shift id, [A-Za-z0-9._-]{1,64}.")],
    home: HomeOption = None,
    dask_address: DaskAddressOption = None,
    workers: WorkersOption = None,
    max_pixels: Annotated[
        int | None, typer.Option("--max-pixels", min=1, help="Refuse frames declaring more pixels.")
    ] = None,
    verbose: VerboseOption = False,
) -> None:
    """Ingest a shift's frames into the zarr store (Prefect flow ``ingest_shift`` on Dask)."""
    from flows.ingest import ingest_shift
    from storage.frame_files import SourceError, list_source_files, resolve_source_dir
    from storage.ids import InvalidShiftId, validate_shift_id
    from storage.settings import SettingsError, load_settings

    _configure_logging(verbose)
    try:
        validate_shift_id(shift)
        root = resolve_source_dir(src)
        if not list_source_files(root):
            raise SourceError(f"source folder {root} holds no files (dotfiles are ignored); check the path")
        settings = load_settings(home)
    except (InvalidShiftId, SourceError, SettingsError) as error:
        raise fail(str(error)) from error
    summary = run_flow(
        ingest_shift,
        settings,
        dask_address,
        workers,
        source=str(root),
        shift_id=shift,
        home=str(settings.home),
        max_pixels=max_pixels,
    )
    print_table(
        f"shift {shift} ingested",
        [
            ("files", summary["files"]),
            ("ingested", summary["ingested"]),
            ("duplicate", summary["duplicate"]),
            ("quarantined", summary["quarantined"]),
            ("manifest", summary["manifest"]),
            ("store", summary["store"]),
        ],
    )
    for path, reason in summary["quarantine_reasons"].items():
        console.print(f"  [yellow]quarantined[/] {path}: {reason}", soft_wrap=True)


def main() -> None:
    """Entry point for ``python -m flows.cli``."""
    app()


if __name__ == "__main__":
    main()
