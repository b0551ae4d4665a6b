"""``defectflow export``: a registered detector's scoring path as an ONNX graph in its package, checked first."""

from __future__ import annotations

from enum import Enum
from typing import Annotated

import typer
from rich.markup import escape

from flows.cli.base import (
    HomeOption,
    ModelHelp,
    VerboseOption,
    app,
    console,
    flow_command,
    print_table,
)


class ExportFormat(str, Enum):
    """Export formats (one so far)."""

    onnx = "onnx"


class Runtime(str, Enum):
    """What CPU workers run an exported package with."""

    auto = "auto"
    onnx = "onnx"
    torch = "torch"


@app.command()
@flow_command
def export(
    model: Annotated[str, typer.Option("--model", help=ModelHelp)] = "models:/detector@champion",
    format_: Annotated[ExportFormat, typer.Option("--format", help="Export format.")] = ExportFormat.onnx,
    runtime: Annotated[
        Runtime,
        typer.Option(
            "--runtime",
            help="What CPU workers run the package with: auto (the faster one, measured here at export), onnx, torch.",
        ),
    ] = Runtime.auto,
    replace: Annotated[bool, typer.Option("--replace", help="Export again when the package has an export.")] = False,
    home: HomeOption = None,
    verbose: VerboseOption = False,
) -> None:
    """Export a detector's scoring path (network, anomaly map, smoothing, score) to ONNX into its package.

    The export is added only when ONNX Runtime scores like torch on the check crops (maps within the tolerance,
    identical decisions); otherwise nothing is written and the command exits with code 2.
    """
    from storage.settings import load_settings
    from tasks.export_model import export_model

    result = export_model(load_settings(home), model, runtime.value, replace)
    record = result.record
    agreement, speed = record.agreement, record.speed
    if not result.added:
        console.print(f"{escape(result.model)} already has an ONNX export (kept; --replace exports again)")
    rows = [
        ("model", result.model),
        ("format", format_.value),
        ("check crops", f"{agreement['crops']}, {agreement['crop_source']}"),
        ("max map difference", f"{agreement['max_map_difference']:.3g} (tolerance {agreement['tolerance']:g})"),
        ("differing decisions", f"{agreement['differing_decisions']} ({agreement['anomalous']} anomalous by torch)"),
        ("torch img/s", f"{speed['torch_images_per_s']:.1f} ({speed['threads']} threads, batch {speed['batch']})"),
        ("ONNX Runtime img/s", f"{speed['onnx_images_per_s']:.1f}"),
        ("CPU workers run", f"{record.runtime} ({record.runtime_reason})"),
    ]
    print_table("ONNX export" + (" added" if result.added else ""), rows)
