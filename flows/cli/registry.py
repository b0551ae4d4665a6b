"""Commands on registered models: ``evaluate``, ``promote``, ``rollback``, ``models``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from flows.cli.base import (
    HomeOption,
    ModelHelp,
    VerboseOption,
    app,
    check_model,
    console,
    evaluate_app,
    flow_command,
    print_table,
    run_local_flow,
)


@evaluate_app.command("segmenter")
@flow_command
def evaluate_segmenter_command(
    data: Annotated[Path, typer.Option("--data", help="Folder with images/ and masks/.")],
    model: Annotated[str, typer.Option("--model", help=ModelHelp)] = "models:/segmenter@champion",
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the metrics as JSON here.")] = None,
    home: HomeOption = None,
    verbose: VerboseOption = False,
) -> None:
    """mIoU, per-class IoU, pixel accuracy and speed of a segmenter."""
    from flows.evaluation import evaluate_segmenter_flow

    check_model(home, model, "segmenter")
    result = run_local_flow(
        evaluate_segmenter_flow,
        data=str(data),
        model=model,
        home=str(home) if home else None,
        json_out=str(json_out) if json_out else None,
    )
    rows = [("model", model), ("version", result.version), ("images", result.images)]
    rows += [("miou", f"{result.miou:.4f}"), ("pixel_accuracy", f"{result.pixel_accuracy:.4f}")]
    rows += [(f"IoU ({k})", "n/a" if v is None else f"{v:.4f}") for k, v in result.per_class_iou.items()]
    rows += [("ms_per_image", f"{result.ms_per_image:.1f}")]
    print_table("segmenter evaluation", rows)


@evaluate_app.command("detector")
@flow_command
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

    check_model(home, model, "detector")
    out_dir = out or (json_out.parent / f"{json_out.stem}-overlays" if json_out else None)
    result = run_local_flow(
        evaluate_detector_flow,
        data=str(data),
        model=model,
        home=str(home) if home else None,
        json_out=str(json_out) if json_out else None,
        out_dir=str(out_dir) if out_dir else None,
    )
    table = Table(title=f"detector evaluation: {model} (v{result.version})", title_justify="left")
    for column in ["defect", "count", "image AUROC", "pixel AUROC", "AUPRO", "image F1-max", "pixel F1-max"]:
        table.add_column(column)

    keys = ["image_auroc", "pixel_auroc", "aupro", "image_f1_max", "pixel_f1_max"]

    def cells(metrics: dict[str, Any]) -> list[str]:
        return [f"{metrics[k]:.4f}" if isinstance(metrics.get(k), float) else "n/a" for k in keys]

    for defect, metrics in result.per_defect.items():
        table.add_row(defect, str(metrics.get("count", "")), *cells(metrics))
    table.add_row("[bold]overall", str(result.n_images), *cells({k: getattr(result, k) for k in keys}))
    console.print(table)
    console.print(f"{result.ms_per_image:.1f} ms per image (forward pass)")
    if out_dir:
        console.print(f"overlays of the worst cases: {out_dir}")


ModelOption = Annotated[str, typer.Option("--model", help="detector or segmenter.")]


@app.command()
@flow_command
def promote(
    model: ModelOption = "detector",
    eval_data: Annotated[
        Path | None, typer.Option("--eval-data", help="Fixed evaluation set [default: DEFECTFLOW_EVAL_DATA].")
    ] = None,
    home: HomeOption = None,
    verbose: VerboseOption = False,
) -> None:
    """Promote <model>@challenger to champion if it beats the champion on the fixed evaluation set.

    A detector is also judged on the reviewed frames (image AUROC, defect against false alarm) when there is at least
    one of each.
    """
    from flows.promotion import promote as promote_flow

    result = run_local_flow(
        promote_flow, model=model, home=str(home) if home else None, eval_data=str(eval_data) if eval_data else None
    )
    verdict = "[green]promoted[/]" if result.promoted else "[red]refused[/]"
    console.print(f"{model} v{result.challenger_version}: {verdict}: {escape(result.reason)}", soft_wrap=True)
    reviewed = result.reviewed
    if reviewed:
        console.print(escape(reviewed["note"]), soft_wrap=True)
    title = "evaluation on the fixed set" + (" and the reviewed frames" if reviewed and reviewed["image_auroc"] else "")
    table = Table(title=title, title_justify="left")
    table.add_column("metric")
    table.add_column(f"challenger v{result.challenger_version}")
    table.add_column("champion")
    champion = result.champion_metrics or {}
    for key, value in result.challenger_metrics.items():
        old = champion.get(key)
        table.add_row(key, f"{value:.4f}" if value is not None else "n/a", f"{old:.4f}" if old is not None else "n/a")
    console.print(table)
    console.print(f"champion: v{result.champion_version}  previous: v{result.previous_version}")


@app.command()
@flow_command
def rollback(model: ModelOption = "detector", home: HomeOption = None, verbose: VerboseOption = False) -> None:
    """Put <model>@previous back as champion."""
    from flows.promotion import rollback as rollback_flow

    result = run_local_flow(rollback_flow, model=model, home=str(home) if home else None)
    console.print(f"{model}: champion is v{result.champion_version} again (v{result.demoted_version} demoted)")


@app.command()
@flow_command
def models(home: HomeOption = None) -> None:
    """List registered model versions and their aliases."""
    from storage.registry import list_versions
    from storage.settings import load_settings

    settings = load_settings(home)
    table = Table(title=f"registry at {settings.tracking_uri}", title_justify="left")
    for column in ("model", "version", "aliases", "run", "backbone weights"):
        table.add_column(column)
    for name in ("segmenter", "detector"):
        for row in list_versions(settings, name):
            table.add_row(name, row["version"], ", ".join(row["aliases"]), row["run_id"], row["weights"])
    console.print(table)
