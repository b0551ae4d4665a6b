"""The ``defectflow`` command line: thin wrappers that validate input, run a flow and print a summary.

Input errors exit with code 2 and a message that says what to fix; every command takes ``--home``. What the
commands share is :mod:`flows.cli.base`; each module here adds one group of commands to :data:`app`, so a new verb
is a function in one of them (or a new module imported below).
"""

from __future__ import annotations

from flows.cli import data, export, registry, review, scoring, training, verdicts  # noqa: F401  (each registers its commands on app)
from flows.cli.base import app, invoke

__all__ = ["app", "invoke", "main"]


def main() -> None:
    """Entry point for ``python -m flows.cli``."""
    app()
