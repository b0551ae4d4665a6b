"""``defectflow serve``: the morning review app on a workspace (``review/``, docs/review.md)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape

from flows.cli.base import HomeOption, app, console, user_errors


@app.command("serve")
def serve(
    home: HomeOption = None,
    host: Annotated[
        str,
        typer.Option(
            "--host", help="Address to listen on; any but loopback needs DEFECTFLOW_REVIEW_TOKEN (docs/review.md)."
        ),
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=1, max=65535, help="Port to listen on.")] = 8080,
    reviewer: Annotated[
        str | None,
        typer.Option("--reviewer", help="Reviewer name filled in for browsers that have not given one."),
    ] = None,
) -> None:
    """Review last night's flagged frames in a browser: zoom, heatmaps, and verdicts (defect, false alarm, unsure)."""
    from review.server import serve as serve_app
    from storage.settings import load_settings

    def say(text: str) -> None:
        console.print(escape(text), soft_wrap=True)

    with user_errors():  # no flow: the app needs neither Prefect's logging set-up nor torch, Dask or MLflow
        serve_app(load_settings(home), host=host, port=port, reviewer=reviewer, say=say)
