"""Commands that bring frames in and check them: ``synth``, ``ingest``, ``verify``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from flows.cli.base import (
    BeltOption,
    DaskAddressOption,
    HomeOption,
    ProductOption,
    VerboseOption,
    WorkersOption,
    app,
    console,
    fail,
    flow_command,
    print_table,
    refuse_if_busy,
    run_flow,
    synth_app,
)


@synth_app.command("shift")
@flow_command
def synth_shift(
    out: Annotated[Path, typer.Argument(help="Folder to write frames/, labels.csv and masks/ into.")],
    images: Annotated[int, typer.Option("--images", min=1, help="Number of frames.")] = 20,
    size: Annotated[tuple[int, int], typer.Option("--size", help="Frame height and width.")] = (1536, 2048),
    defect_rate: Annotated[float, typer.Option("--defect-rate", min=0.0, max=1.0)] = 0.2,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    product: ProductOption = None,
    belt: BeltOption = None,
) -> None:
    """Generate a synthetic shift: frames of machined components on a conveyor, some with defects."""
    from flows.progress import track
    from synth.shift import generate_shift

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
            belt=belt,
        )
        for _ in done:
            pass
    except ValueError as error:
        raise fail(str(error)) from error
    print_table(f"synthetic shift in {out}", [(k, v) for k, v in vars(summary).items()])


@synth_app.command("dataset")
@flow_command
def synth_dataset(
    out: Annotated[Path, typer.Argument(help="Folder to write mvtec/ and segmentation/ into.")],
    train_good: Annotated[int, typer.Option("--train-good", min=1)] = 200,
    test_good: Annotated[int, typer.Option("--test-good", min=1)] = 40,
    test_defect: Annotated[int, typer.Option("--test-defect", min=1, help="Test images per defect type.")] = 12,
    seg_images: Annotated[int, typer.Option("--seg-images", min=2)] = 80,
    size: Annotated[tuple[int, int], typer.Option("--size", help="Frame height and width.")] = (768, 1024),
    seed: Annotated[int, typer.Option("--seed")] = 0,
    product: ProductOption = None,
    belt: BeltOption = None,
) -> None:
    """Generate training sets: component crops in the MVTec AD layout and a segmentation set."""
    from synth.dataset import generate_dataset

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
            belt=belt,
        )
    except ValueError as error:
        raise fail(str(error)) from error
    print_table(f"synthetic training sets in {out}", [(k, v) for k, v in vars(summary).items()])


@app.command()
@flow_command
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
    from storage.ids import validate_shift_id
    from storage.settings import load_settings

    validate_shift_id(shift)
    root = resolve_source_dir(src)
    if not list_source_files(root):
        raise SourceError(f"source folder {root} holds no files (dotfiles are ignored); check the path")
    settings = load_settings(home).ensure()
    refuse_if_busy(settings, shift)
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
            ("files", summary.files),
            ("ingested", summary.ingested),
            ("duplicate", summary.duplicate),
            ("quarantined", summary.quarantined),
            ("refused (changed since ingest)", len(summary.refused)),
            ("manifest", summary.manifest),
            ("store", summary.store),
        ],
    )
    for path, reason in summary.quarantine_reasons.items():
        console.print(f"  [yellow]quarantined[/] {escape(path)}: {escape(reason)}", soft_wrap=True)
    for path, reason in summary.refused.items():
        console.print(f"  [red]refused[/] {escape(path)}: {escape(reason)}", soft_wrap=True)


@app.command()
@flow_command
def verify(
    shift: Annotated[str, typer.Option("--shift", help="Shift to check.")],
    home: HomeOption = None,
    dask_address: DaskAddressOption = None,
    workers: WorkersOption = None,
    verbose: VerboseOption = False,
) -> None:
    """Check a shift's stored frames and heatmaps against their checksums; exit 1 and say how to repair damage."""
    from flows.verify import verify_shift
    from storage.settings import load_settings

    settings = load_settings(home).ensure()
    refuse_if_busy(settings, shift)
    summary = run_flow(verify_shift, settings, dask_address, workers, shift_id=shift, home=str(settings.home))
    damaged = {**summary.damaged_frames, **summary.damaged_heatmaps}
    print_table(
        f"shift {shift} verified",
        [
            ("frames checked", summary.frames_checked),
            ("heatmaps checked", summary.heatmaps_checked),
            ("damaged frames", len(summary.damaged_frames)),
            ("damaged heatmaps", len(summary.damaged_heatmaps)),
        ],
    )
    for kind, problems in (("frame", summary.damaged_frames), ("heatmap", summary.damaged_heatmaps)):
        for image_id, problem in problems.items():
            console.print(f"  [red]damaged {kind}[/] {image_id}: {escape(problem)}", soft_wrap=True)
    if summary.repair_frames:
        console.print(f"restore the damaged frames from their sources: {escape(summary.repair_frames)}", soft_wrap=True)
    if summary.repair_heatmaps:
        console.print(f"score the frames with damaged heatmaps again: {summary.repair_heatmaps}", soft_wrap=True)
    if damaged:
        raise typer.Exit(1)
