"""The ``defectflow`` command line: thin wrappers that validate input, run a flow and print a summary.

Input errors exit with code 2 and a message that says what to fix; every command takes ``--home``.
"""

from __future__ import annotations

import logging
import os
import shlex
import signal
import threading
from collections.abc import Iterator
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
from models.detector.recipes import RECOMMENDED_BACKBONE
from models.segmentation.recipes import DEFAULT_BACKBONE as SEGMENTER_BACKBONE
from models.weight_sources import PRETRAINED, RANDOM_INIT

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
        help="One product on the line: part geometry and material fixed to product N (default: a new part per frame).",
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


@synth_app.command("shift")
def synth_shift(
    out: Annotated[Path, typer.Argument(help="Folder to write frames/, labels.csv and masks/ into.")],
    images: Annotated[int, typer.Option("--images", min=1, help="Number of frames.")] = 20,
    size: Annotated[tuple[int, int], typer.Option("--size", help="Frame height and width.")] = (1536, 2048),
    defect_rate: Annotated[float, typer.Option("--defect-rate", min=0.0, max=1.0)] = 0.2,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    product: ProductOption = None,
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
            product=product,
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
    product: ProductOption = None,
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
            product=product,
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
        settings = load_settings(home).ensure()
    except (InvalidShiftId, SourceError, SettingsError) as error:
        raise fail(str(error)) from error
    refuse_if_busy(settings, shift)
    summary = guarded(
        lambda: run_flow(
            ingest_shift,
            settings,
            dask_address,
            workers,
            source=str(root),
            shift_id=shift,
            home=str(settings.home),
            max_pixels=max_pixels,
        )
    )
    print_table(
        f"shift {shift} ingested",
        [
            ("files", summary["files"]),
            ("ingested", summary["ingested"]),
            ("duplicate", summary["duplicate"]),
            ("quarantined", summary["quarantined"]),
            ("refused (changed since ingest)", len(summary["refused"])),
            ("manifest", summary["manifest"]),
            ("store", summary["store"]),
        ],
    )
    for path, reason in summary["quarantine_reasons"].items():
        console.print(f"  [yellow]quarantined[/] {escape(path)}: {escape(reason)}", soft_wrap=True)
    for path, reason in summary["refused"].items():
        console.print(f"  [red]refused[/] {escape(path)}: {escape(reason)}", soft_wrap=True)


def _known_errors() -> tuple[type[Exception], ...]:
    from flows.scoring import NothingToScore
    from flows.training import DataError
    from models.divergence_guard import TrainingDivergedError
    from models.weight_sources import WeightsUnavailableError
    from storage.ids import InvalidShiftId
    from storage.registry import DamagedModel, ModelNotFound, RegistryUnavailable
    from storage.settings import SettingsError

    return (
        DataError,
        ModelNotFound,
        RegistryUnavailable,
        DamagedModel,
        NothingToScore,
        InvalidShiftId,
        SettingsError,
        FileNotFoundError,
        WeightsUnavailableError,
        TrainingDivergedError,
    )


def resolve_weights_first(home: Path | None, role: str, backbone: str, requested: str) -> str:
    """Resolve a weights request before any work starts: exit 2 with the ways out when nothing can deliver.

    Also checks that a weights file fits the backbone, so that a wrong or damaged file fails here, naming the file.
    """
    from storage.settings import load_settings
    from tasks.backbone_weights import check_weights_fit, resolve_backbone_weights

    resolved = guarded(lambda: resolve_backbone_weights(load_settings(home), role, backbone, requested))
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

    guarded(lambda: resolve_model(load_settings(home), uri, kind))


BUSY_EXIT_CODE = 75  # EX_TEMPFAIL: another command holds the shift; the same command later will work
RETRY_EXIT_CODE = 75  # EX_TEMPFAIL: the Dask scheduler went away; finished work is kept, the same command resumes


def guarded(call: Any) -> Any:
    """Run ``call``; the errors a user can fix become exit code 2 with their message, a busy shift or a lost Dask
    scheduler exit code 75 (run the same command again)."""
    from flows.scoring import SchedulerLost
    from storage.shift_lock import ShiftBusy

    try:
        return call()
    except ShiftBusy as error:
        raise fail(str(error), BUSY_EXIT_CODE) from error
    except SchedulerLost as error:
        raise fail(str(error), RETRY_EXIT_CODE) from error
    except _known_errors() as error:
        raise fail(str(error)) from error


def refuse_if_busy(settings: Any, shift: str | None) -> None:
    """Exit 75 before any flow starts when another command holds the shift.

    The flows take the shift's lock themselves; this check only spares the user the log of a refused flow run.
    """
    from storage.ids import validate_shift_id
    from storage.shift_lock import shift_lock

    def probe() -> None:
        with shift_lock(settings.home, validate_shift_id(shift), "a check"):
            pass

    if shift:
        guarded(probe)


def _print_metrics(title: str, result: dict[str, Any], keys: list[str]) -> None:
    rows = []
    for key in keys:
        value = result.get(key)
        rows.append((key, f"{value:.4f}" if isinstance(value, float) else value))
    print_table(title, rows)


ModelHelp = "models:/<name>@<alias>, models:/<name>/<version>, or a model directory."


@train_app.command("segmenter")
def train_segmenter_command(
    data: Annotated[Path, typer.Option("--data", help="Folder with images/ and masks/.")],
    backbone: Annotated[
        str, typer.Option("--backbone", help="resnet50 (paper) or resnet18 (small runs).")
    ] = SEGMENTER_BACKBONE,
    image_size: Annotated[
        int | None, typer.Option("--image-size", min=32, help="Long side in pixels. Default: the recipe's.")
    ] = None,
    epochs: Annotated[int | None, typer.Option("--epochs", min=1, help="Default: the backbone's recipe.")] = None,
    batch_size: Annotated[
        int | None, typer.Option("--batch-size", min=2, help="Default: the backbone's recipe.")
    ] = None,
    label_fraction: Annotated[float, typer.Option("--label-fraction", min=0.0, max=1.0)] = 1.0,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    encoder_weights: EncoderWeightsOption = PRETRAINED,
    max_minutes: Annotated[float | None, typer.Option("--max-minutes", help="Wall-clock training budget.")] = None,
    home: HomeOption = None,
    verbose: VerboseOption = False,
) -> None:
    """Train the AMAM U-Net segmenter (Prefect flow ``train_segmenter``)."""
    from flows.training import train_segmenter_flow

    _configure_logging(verbose)
    if not 0.0 < label_fraction <= 1.0:
        raise fail("--label-fraction must be in (0, 1], e.g. 0.1 for a tenth of the masks")
    encoder_weights = resolve_weights_first(home, "encoder", backbone, encoder_weights)
    result = guarded(
        lambda: run_local_flow(
            train_segmenter_flow,
            data=str(data),
            home=str(home) if home else None,
            backbone=backbone,
            image_size=image_size,
            epochs=epochs,
            batch_size=batch_size,
            label_fraction=label_fraction,
            seed=seed,
            encoder_weights=encoder_weights,
            max_minutes=max_minutes,
        )
    )
    _print_metrics(
        f"segmenter v{result['version']} registered as segmenter@challenger",
        result,
        ["val_miou", "val_pixel_accuracy", "best_epoch", "train_images", "val_images", "training_seconds", "run_id"],
    )


@train_app.command("detector")
def train_detector_command(
    data: Annotated[Path, typer.Option("--data", help="MVTec AD layout folder (train/good, test/, ground_truth/).")],
    backbone: Annotated[
        str,
        typer.Option(
            "--backbone",
            help="Teacher (timm name): mobilenetv2_100 (recommended on CPU), wide_resnet50_2 (paper), resnet18...",
        ),
    ] = RECOMMENDED_BACKBONE,
    image_size: Annotated[
        int | None,
        typer.Option(
            "--image-size", min=64, help="Square input side, multiple of 32 (default: the backbone's recipe)."
        ),
    ] = None,
    epochs: Annotated[int | None, typer.Option("--epochs", min=1, help="Default: the backbone's recipe.")] = None,
    batch_size: Annotated[
        int | None, typer.Option("--batch-size", min=2, help="Default: the backbone's recipe.")
    ] = None,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    teacher_weights: TeacherWeightsOption = PRETRAINED,
    max_minutes: Annotated[float | None, typer.Option("--max-minutes", help="Wall-clock training budget.")] = None,
    lr: Annotated[
        float | None, typer.Option("--lr", min=0.0, help="Adam learning rate (default: the backbone's recipe).")
    ] = None,
    home: HomeOption = None,
    verbose: VerboseOption = False,
) -> None:
    """Train the reverse-distillation detector (Prefect flow ``train_detector``).

    Settings not given come from the backbone family's recipe (models/detector/recipes.py, docs/detector.md).
    """
    from flows.training import train_detector_flow

    _configure_logging(verbose)
    _known_recipe(backbone)
    teacher_weights = resolve_weights_first(home, "teacher", backbone, teacher_weights)
    result = guarded(
        lambda: run_local_flow(
            train_detector_flow,
            data=str(data),
            home=str(home) if home else None,
            backbone=backbone,
            image_size=image_size,
            epochs=epochs,
            batch_size=batch_size,
            seed=seed,
            teacher_weights=teacher_weights,
            max_minutes=max_minutes,
            lr=lr,
        )
    )
    if result.get("nonfinite_recoveries"):
        console.print(
            f"[yellow]note:[/] training met non-finite values {result['nonfinite_recoveries']} time(s) and recovered "
            "(restored the last finite weights, lowered the learning rate); the MLflow run has the record."
        )
    _print_metrics(
        f"detector v{result['version']} registered as detector@challenger",
        result,
        ["image_auroc", "pixel_auroc", "aupro", "image_f1_max", "pixel_f1_max", "epochs_completed", "run_id"],
    )


def _known_recipe(backbone: str) -> None:
    """Exit 2 with the supported families when ``backbone`` has no detector recipe."""
    from models.detector.recipes import recipe_for

    try:
        recipe_for(backbone)
    except ValueError as error:
        raise fail(str(error)) from error


@evaluate_app.command("segmenter")
def evaluate_segmenter_command(
    data: Annotated[Path, typer.Option("--data", help="Folder with images/ and masks/.")],
    model: Annotated[str, typer.Option("--model", help=ModelHelp)] = "models:/segmenter@champion",
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the metrics as JSON here.")] = None,
    home: HomeOption = None,
    verbose: VerboseOption = False,
) -> None:
    """mIoU, per-class IoU, pixel accuracy and speed of a segmenter."""
    from flows.evaluation import evaluate_segmenter_flow

    _configure_logging(verbose)
    check_model(home, model, "segmenter")
    result = guarded(
        lambda: run_local_flow(
            evaluate_segmenter_flow,
            data=str(data),
            model=model,
            home=str(home) if home else None,
            json_out=str(json_out) if json_out else None,
        )
    )
    rows = [("model", model), ("version", result.get("version")), ("images", result["images"])]
    rows += [("miou", f"{result['miou']:.4f}"), ("pixel_accuracy", f"{result['pixel_accuracy']:.4f}")]
    rows += [(f"IoU ({k})", "n/a" if v is None else f"{v:.4f}") for k, v in result["per_class_iou"].items()]
    rows += [("ms_per_image", f"{result['ms_per_image']:.1f}")]
    print_table("segmenter evaluation", rows)


@evaluate_app.command("detector")
def evaluate_detector_command(
    data: Annotated[Path, typer.Option("--data", help="MVTec AD layout folder with test/ and ground_truth/.")],
    model: Annotated[str, typer.Option("--model", help=ModelHelp)] = "models:/detector@champion",
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the metrics as JSON here.")] = None,
    out: Annotated[
        Path | None, typer.Option("--out", help="Folder for overlays of the worst cases [default: next to --json].")
    ] = None,
    home: HomeOption = None,
    verbose: VerboseOption = False,
) -> None:
    """Image AUROC, pixel AUROC, AUPRO and F1-max of a detector, per defect type and overall."""
    from flows.evaluation import evaluate_detector_flow

    _configure_logging(verbose)
    check_model(home, model, "detector")
    out_dir = out or (json_out.parent / f"{json_out.stem}-overlays" if json_out else None)
    result = guarded(
        lambda: run_local_flow(
            evaluate_detector_flow,
            data=str(data),
            model=model,
            home=str(home) if home else None,
            json_out=str(json_out) if json_out else None,
            out_dir=str(out_dir) if out_dir else None,
        )
    )
    table = Table(title=f"detector evaluation: {model} (v{result.get('version')})", title_justify="left")
    for column in ["defect", "count", "image AUROC", "pixel AUROC", "AUPRO", "image F1-max", "pixel F1-max"]:
        table.add_column(column)

    def cells(metrics: dict[str, Any]) -> list[str]:
        keys = ["image_auroc", "pixel_auroc", "aupro", "image_f1_max", "pixel_f1_max"]
        return [f"{metrics[k]:.4f}" if isinstance(metrics.get(k), float) else "n/a" for k in keys]

    for defect, metrics in result["per_defect"].items():
        table.add_row(defect, str(metrics.get("count", "")), *cells(metrics))
    table.add_row("[bold]overall", str(result["n_images"]), *cells(result))
    console.print(table)
    console.print(f"{result['ms_per_image']:.1f} ms per image (forward pass)")
    if out_dir:
        console.print(f"overlays of the worst cases: {out_dir}")


@app.command()
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

    _configure_logging(verbose)
    settings = guarded(lambda: load_settings(home).ensure())
    refuse_if_busy(settings, shift)
    if not one_stage:
        check_model(home, segmenter, "segmenter")
    check_model(home, detector, "detector")
    count = local_worker_count(settings, workers) if not (dask_address or settings.dask_address) else None
    summary = guarded(
        lambda: run_flow(
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
    )
    print_table(
        f"shift {summary['shift_id']} scored",
        [
            ("frames", summary["frames"]),
            ("scored this run", summary["scored_this_run"]),
            ("flagged", summary["flagged"]),
            ("no component", summary["no_component"]),
            ("failed", summary["failed"]),
            ("images/s", f"{summary['images_per_second']:.2f}"),
            ("segmenter", summary["segmenter_version"] or "none (one-stage)"),
            ("detector", summary["detector_version"]),
            ("scores", summary["scores"]),
            ("report", summary["report"]),
            ("MLflow run", summary["mlflow_run_id"] or "none"),
        ],
    )
    if summary["mlflow_not_logged"]:
        console.print(
            f"[yellow]warning:[/] not logged to MLflow: {escape(summary['mlflow_not_logged'])}. Scores, heatmaps "
            "and the report are written; run the same command again when MLflow is reachable to log the shift's run",
            soft_wrap=True,
        )


ModelOption = Annotated[str, typer.Option("--model", help="detector or segmenter.")]


@app.command()
def promote(
    model: ModelOption = "detector",
    eval_data: Annotated[
        Path | None, typer.Option("--eval-data", help="Fixed evaluation set [default: DEFECTFLOW_EVAL_DATA].")
    ] = None,
    home: HomeOption = None,
    verbose: VerboseOption = False,
) -> None:
    """Promote <model>@challenger to champion if it beats the champion on the fixed evaluation set."""
    from flows.promotion import promote as promote_flow

    _configure_logging(verbose)
    result = guarded(
        lambda: run_local_flow(
            promote_flow, model=model, home=str(home) if home else None, eval_data=str(eval_data) if eval_data else None
        )
    )
    verdict = "[green]promoted[/]" if result["promoted"] else "[red]refused[/]"
    console.print(f"{model} v{result['challenger_version']}: {verdict}: {escape(result['reason'])}", soft_wrap=True)
    table = Table(title="evaluation on the fixed set", title_justify="left")
    table.add_column("metric")
    table.add_column(f"challenger v{result['challenger_version']}")
    table.add_column("champion")
    champion = result["champion_metrics"] or {}
    for key, value in result["challenger_metrics"].items():
        old = champion.get(key)
        table.add_row(key, f"{value:.4f}" if value is not None else "n/a", f"{old:.4f}" if old is not None else "n/a")
    console.print(table)
    console.print(f"champion: v{result['champion_version']}  previous: v{result['previous_version']}")


@app.command()
def rollback(model: ModelOption = "detector", home: HomeOption = None, verbose: VerboseOption = False) -> None:
    """Put <model>@previous back as champion."""
    from flows.promotion import rollback as rollback_flow

    _configure_logging(verbose)
    result = guarded(lambda: run_local_flow(rollback_flow, model=model, home=str(home) if home else None))
    console.print(f"{model}: champion is v{result['champion_version']} again (v{result['demoted_version']} demoted)")


@app.command()
def retrain(
    since_days: Annotated[int | None, typer.Option("--since-days", min=1, help="Use shifts scored in N days.")] = None,
    shifts: Annotated[list[str] | None, typer.Option("--shifts", help="Shift ids to use (repeat).")] = None,
    good_dir: Annotated[Path | None, typer.Option("--good-dir", help="Curated folder of good parts.")] = None,
    eval_data: Annotated[Path | None, typer.Option("--eval-data", help="Fixed evaluation set.")] = None,
    seg_data: Annotated[Path | None, typer.Option("--seg-data", help="Also retrain the segmenter on this.")] = None,
    backbone: Annotated[str, typer.Option("--backbone", help="Detector teacher (timm name).")] = RECOMMENDED_BACKBONE,
    image_size: Annotated[
        int | None, typer.Option("--image-size", min=64, help="Default: the backbone's recipe.")
    ] = None,
    epochs: Annotated[int | None, typer.Option("--epochs", min=1, help="Default: the backbone's recipe.")] = None,
    max_minutes: Annotated[float | None, typer.Option("--max-minutes")] = None,
    seg_backbone: Annotated[str, typer.Option("--seg-backbone", help="Segmenter encoder (with --seg-data).")] = (
        SEGMENTER_BACKBONE
    ),
    teacher_weights: TeacherWeightsOption = PRETRAINED,
    encoder_weights: EncoderWeightsOption = PRETRAINED,
    dask_address: DaskAddressOption = None,
    workers: WorkersOption = None,
    home: HomeOption = None,
    verbose: VerboseOption = False,
) -> None:
    """Retrain the detector on recent shifts' confidently normal frames; registers it as detector@challenger."""
    from flows.retraining import retrain as retrain_flow
    from storage.settings import load_settings

    _configure_logging(verbose)
    settings = guarded(lambda: load_settings(home))
    _known_recipe(backbone)
    teacher_weights = resolve_weights_first(home, "teacher", backbone, teacher_weights)
    if seg_data:
        encoder_weights = resolve_weights_first(home, "encoder", seg_backbone, encoder_weights)
    result = guarded(
        lambda: run_flow(
            retrain_flow,
            settings,
            dask_address,
            workers,
            home=str(settings.home),
            since_days=since_days,
            shifts=shifts,
            good_dir=str(good_dir) if good_dir else None,
            eval_data=str(eval_data) if eval_data else None,
            seg_data=str(seg_data) if seg_data else None,
            backbone=backbone,
            image_size=image_size,
            epochs=epochs,
            max_minutes=max_minutes,
            seg_backbone=seg_backbone,
            teacher_weights=teacher_weights,
            encoder_weights=encoder_weights,
        )
    )
    detector = result["detector"]
    rows = [("detector version", f"v{detector['version']} (challenger)")]
    rows += [(k, v) for k, v in result["lineage"].items()]
    rows += [(k, f"{detector[k]:.4f}") for k in ("image_auroc", "pixel_auroc", "aupro") if k in detector]
    print_table("retrained", rows)
    console.print("next: 'defectflow promote --model detector' decides whether it scores the next shift")


@app.command()
def models(home: HomeOption = None) -> None:
    """List registered model versions and their aliases."""
    from storage.registry import list_versions
    from storage.settings import load_settings

    settings = guarded(lambda: load_settings(home))
    table = Table(title=f"registry at {settings.tracking_uri}", title_justify="left")
    for column in ("model", "version", "aliases", "run", "backbone weights"):
        table.add_column(column)
    for name in ("segmenter", "detector"):
        for row in list_versions(settings, name):
            table.add_row(name, row["version"], ", ".join(row["aliases"]), row["run_id"], row["weights"])
    console.print(table)


@app.command()
def verify(
    shift: Annotated[str, typer.Option("--shift", help="Shift to check.")],
    home: HomeOption = None,
    dask_address: DaskAddressOption = None,
    workers: WorkersOption = None,
    verbose: VerboseOption = False,
) -> None:
    """Check a shift's stored frames and heatmaps against their checksums; exit 1 and say how to repair damage."""
    from flows.verify import NothingToVerify, verify_shift
    from storage.settings import load_settings

    _configure_logging(verbose)
    settings = guarded(lambda: load_settings(home).ensure())
    refuse_if_busy(settings, shift)
    try:
        summary = guarded(
            lambda: run_flow(verify_shift, settings, dask_address, workers, shift_id=shift, home=str(settings.home))
        )
    except NothingToVerify as error:
        raise fail(str(error)) from error
    damaged = {**summary["damaged_frames"], **summary["damaged_heatmaps"]}
    print_table(
        f"shift {shift} verified",
        [
            ("frames checked", summary["frames_checked"]),
            ("heatmaps checked", summary["heatmaps_checked"]),
            ("damaged frames", len(summary["damaged_frames"])),
            ("damaged heatmaps", len(summary["damaged_heatmaps"])),
        ],
    )
    for kind, problems in (("frame", summary["damaged_frames"]), ("heatmap", summary["damaged_heatmaps"])):
        for image_id, problem in problems.items():
            console.print(f"  [red]damaged {kind}[/] {image_id}: {escape(problem)}", soft_wrap=True)
    if summary["repair_frames"]:
        console.print(
            f"restore the damaged frames from their sources: {escape(summary['repair_frames'])}", soft_wrap=True
        )
    if summary["repair_heatmaps"]:
        console.print(f"score the frames with damaged heatmaps again: {summary['repair_heatmaps']}", soft_wrap=True)
    if damaged:
        raise typer.Exit(1)


def main() -> None:
    """Entry point for ``python -m flows.cli``."""
    app()


if __name__ == "__main__":
    main()
