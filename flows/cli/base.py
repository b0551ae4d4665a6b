"""What every ``defectflow`` command shares: the Typer apps, the common options, running a flow against the
command's Prefect API, and turning the errors a user can fix into exit codes with a message."""

from __future__ import annotations

import functools
import logging
import os
import shlex
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

# Idle OpenMP threads must not spin: on a busy machine spinning made torch 10-20x slower (docs/segmenter.md).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from flows.progress import enable_progress
from models.errors import DefectflowError
from models.weight_sources import RANDOM_INIT

app = typer.Typer(
    name="defectflow",
    help="Batch inspection of industrial components: ingest shifts, score them, train and promote models.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
synth_app = typer.Typer(help="Generate synthetic shifts and training sets.", no_args_is_help=True)
train_app = typer.Typer(help="Train a model; it is registered in MLflow as <model>@challenger.", no_args_is_help=True)
evaluate_app = typer.Typer(help="Evaluate a model on a labelled set.", no_args_is_help=True)
app.add_typer(synth_app, name="synth")
app.add_typer(train_app, name="train")
app.add_typer(evaluate_app, name="evaluate")

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
ProductOption = Annotated[
    int | None,
    typer.Option(
        "--product",
        min=0,
        help="One product on the line: part geometry, material and marks fixed to product N "
        "(default: a new part per frame).",
    ),
]
BeltOption = Annotated[
    int | None,
    typer.Option(
        "--belt",
        min=0,
        help="One conveyor belt under the camera: belt N in every frame (default: a new belt per frame).",
    ),
]
_WEIGHTS_HELP = (
    "'pretrained' (default): {setting}, then DEFECTFLOW_WEIGHTS_DIR/<backbone>.pth, then timm's cache or hub; "
    "'timm'; a state-dict PATH; or 'none' (random initialisation: no pretrained features)."
)
TeacherWeightsOption = Annotated[
    str, typer.Option("--teacher-weights", help=_WEIGHTS_HELP.format(setting="DEFECTFLOW_TEACHER_WEIGHTS"))
]
EncoderWeightsOption = Annotated[
    str, typer.Option("--encoder-weights", help=_WEIGHTS_HELP.format(setting="DEFECTFLOW_ENCODER_WEIGHTS"))
]


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print ``message`` as an error and return the exit to raise."""
    error_console.print(f"[bold red]error:[/] {escape(message)}", soft_wrap=True)
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
    for name in ("distributed", "mlflow", "alembic", "models", "tasks"):
        logging.getLogger(name).setLevel(logging.INFO if verbose else logging.WARNING)
    from storage.settings import progress_forced

    enable_progress(console.is_terminal or progress_forced())


@contextmanager
def interruptible() -> Iterator[None]:
    """End a command stopped by Ctrl-C or SIGTERM with exit code 128 + signal and a line on how to resume.

    SIGTERM becomes the same exception as Ctrl-C, so both unwind through the flow engine (the run is marked
    crashed), the Dask cluster and the temporary Prefect server, which are stopped instead of left running.
    """
    if threading.current_thread() is not threading.main_thread():  # signal handlers belong to the main thread
        yield
        return
    received: list[int] = []

    def interrupt(signum: int, _frame: Any) -> None:
        received.append(signum)
        raise KeyboardInterrupt

    previous = {number: signal.signal(number, interrupt) for number in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    except BaseException as error:
        if not (received or isinstance(error, KeyboardInterrupt)):
            raise
        number = received[0] if received else signal.SIGINT
        error_console.print(
            f"interrupted by {signal.Signals(number).name}: run the same command again to resume "
            "(an ingest or a scoring keeps what had finished and picks up where it stopped)",
            soft_wrap=True,
        )
        raise typer.Exit(128 + number) from None
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def run_flow(flow: Any, settings: Any, address: str | None, cluster_workers: int | None, **parameters: Any) -> Any:
    """Run ``flow`` with a Dask task runner against the command's Prefect API."""
    from flows.runtime import dask_task_runner, prefect_api

    with interruptible(), prefect_api():
        runner = dask_task_runner(settings, address=address, workers=cluster_workers)
        return flow.with_options(task_runner=runner)(**parameters)


def invoke(arguments: list[str]) -> None:
    """Run one ``defectflow`` command in this process (demo, benchmarks); a failing command raises ``SystemExit``.

    With ``standalone_mode=False`` click returns a failed command's exit code instead of raising, so it is
    checked here.
    """
    try:
        code = app(arguments, standalone_mode=False)
    except SystemExit as exit_:
        code = exit_.code
    if code not in (0, None):
        raise SystemExit(f"'defectflow {shlex.join(arguments)}' exited with code {code}")


def run_local_flow(flow: Any, **parameters: Any) -> Any:
    """Run a flow that needs no Dask cluster (training, evaluation, promotion) against the Prefect API."""
    from flows.runtime import prefect_api

    with interruptible(), prefect_api():
        return flow(**parameters)


def print_table(title: str, rows: list[tuple[str, Any]]) -> None:
    """A two-column summary table."""
    table = Table(title=escape(title), show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    for key, value in rows:
        table.add_row(escape(str(key)), escape(str(value)))
    console.print(table)


def resolve_weights_first(home: Path | None, role: str, backbone: str, requested: str) -> str:
    """Resolve a weights request before any work starts: exit 2 with the ways out when nothing can deliver.

    Also checks that a weights file fits the backbone, so that a wrong or damaged file fails here, naming the file.
    """
    from storage.settings import load_settings
    from tasks.backbone_weights import check_weights_fit, resolve_backbone_weights

    resolved = resolve_backbone_weights(load_settings(home), role, backbone, requested)
    try:
        check_weights_fit(role, backbone, resolved)
    except ValueError as error:
        raise fail(str(error)) from error
    if resolved == RANDOM_INIT:
        flag = "--teacher-weights" if role == "teacher" else "--encoder-weights"
        console.print(
            f"[yellow]note:[/] the {role} ({backbone}) is randomly initialised ({flag} none): no pretrained "
            + (
                "features; anomaly scores rest on random features, expect a far weaker detector."
                if role == "teacher"
                else "features; it trains from scratch."
            )
        )
    else:
        console.print(f"{role} weights: {resolved if resolved != 'timm' else 'timm (cache or hub)'}")
    return resolved


def check_model(home: Path | None, uri: str, kind: str) -> None:
    """Fail fast, before any flow starts, when a model URI names nothing."""
    from storage.registry import resolve_model
    from storage.settings import load_settings

    resolve_model(load_settings(home), uri, kind)


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn the errors a user can fix into their message and exit code; anything else keeps its traceback.

    Those are :class:`models.errors.DefectflowError` (exit 2, or 75 for "run the same command again later") and a
    missing file. Importing nothing heavy, so quick commands (``serve``, ``verdicts export``) use it too.
    """
    try:
        yield
    except DefectflowError as error:
        raise fail(str(error), error.exit_code) from error
    except FileNotFoundError as error:
        raise fail(str(error)) from error


def flow_command(function: Callable[..., Any]) -> Callable[..., Any]:
    """Decorate a command (under ``@app.command()``): quiet logs unless its ``--verbose``, and :func:`user_errors`.

    The command's body then reads as the steps it takes, with no error handling of its own.
    """

    @functools.wraps(function)
    def command(*args: Any, **kwargs: Any) -> Any:
        _configure_logging(bool(kwargs.get("verbose")))
        with user_errors():
            return function(*args, **kwargs)

    return command


def refuse_if_busy(settings: Any, shift: str | None) -> None:
    """Exit 75 before any flow starts when another command holds the shift.

    The flows take the shift's lock themselves; this check only spares the user the log of a refused flow run.
    """
    from storage.ids import validate_shift_id
    from storage.shift_lock import shift_lock

    if shift:
        with shift_lock(settings.home, validate_shift_id(shift), "a check"):
            pass


def _print_metrics(title: str, result: Any, keys: list[str]) -> None:
    """A table of ``result``'s attributes ``keys`` (a flow's result record), floats to four places."""
    rows = []
    for key in keys:
        value = getattr(result, key)
        rows.append((key, f"{value:.4f}" if isinstance(value, float) else value))
    print_table(title, rows)


ModelHelp = "models:/<name>@<alias>, models:/<name>/<version>, or a model directory."


def _known_recipe(backbone: str) -> None:
    """Exit 2 with the supported families when ``backbone`` has no detector recipe."""
    from models.detector.recipes import recipe_for

    try:
        recipe_for(backbone)
    except ValueError as error:
        raise fail(str(error)) from error
