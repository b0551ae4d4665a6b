"""Figures logged to MLflow: loss curves, ROC and PR curves, overlays. Matplotlib without a display.

Matplotlib is imported on the first figure, not with this module: the scoring flow imports it and draws one
histogram at the end of a run, and its process stays lean until then.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any


def _pyplot() -> Any:
    """``matplotlib.pyplot`` on the Agg backend (no display)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def line_plot(path: Path, series: dict[str, tuple[Sequence[float], Sequence[float]]], xlabel: str, ylabel: str) -> Path:
    """One figure with a line per series ``name: (x, y)``; returns ``path``."""
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(6, 4))
    for name, (x, y) in series.items():
        axis.plot(list(x), list(y), label=name)
    axis.set_xlabel(xlabel)
    axis.set_ylabel(ylabel)
    axis.grid(alpha=0.3)
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def histogram_plot(path: Path, values: Sequence[float], xlabel: str, title: str, marker: float | None = None) -> Path:
    """A histogram with an optional vertical decision line; returns ``path``."""
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(6, 3.5))
    axis.hist(list(values), bins=50, color="#4477aa")
    if marker is not None:
        axis.axvline(marker, color="red", linestyle="--", label=f"decision ({marker})")
        axis.legend()
    axis.set_xlabel(xlabel)
    axis.set_ylabel("count")
    axis.set_title(title)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path
