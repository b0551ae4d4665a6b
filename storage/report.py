"""The operator's page for a shift: ``results/<shift>/report.html``, readable offline in any browser."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import pandas as pd

from storage.overlay import CONTOUR_LEVEL, colour_bar_css
from storage.tables import ScoreStatus

_STYLE = """
body{font-family:system-ui,sans-serif;margin:2rem;color:#222}
h1{margin-bottom:.2rem} .muted{color:#666}
.counts{display:flex;gap:1rem;margin:1rem 0}
.count{border:1px solid #ccc;border-radius:6px;padding:.6rem 1rem;min-width:7rem}
.count b{display:block;font-size:1.6rem}
.grid{display:grid;grid-template-columns:1fr;gap:1rem}
figure{margin:0;border:1px solid #ddd;border-radius:6px;padding:.5rem;max-width:1100px}
figure img{max-width:100%} figcaption{font-size:.9rem}
.legend{display:flex;align-items:center;gap:.5rem;font-size:.9rem;margin:.5rem 0}
.bar{display:inline-block;width:12rem;height:.8rem;border:1px solid #999}
.contour{display:inline-block;width:1.5rem;border-top:3px solid #0ff}
table{border-collapse:collapse;margin-top:1rem} td,th{border-bottom:1px solid #eee;padding:.2rem .6rem;text-align:left}
"""

#: The report's file name in a shift's results folder.
REPORT_FILE = "report.html"


def write_report(
    path: Path,
    shift_id: str,
    scores: pd.DataFrame,
    overlays: dict[str, str],
    context: dict[str, Any],
) -> Path:
    """Write the report: counts, and the flagged frames (highest score first) with their overlays.

    Each overlay shows the frame with the scored box, the box's heatmap in the colour map, and the box with the
    pixel-threshold contour (:mod:`storage.overlay`); the legend above them says how to read them.

    Args:
        path: Where to write ``report.html``.
        shift_id: The shift.
        scores: The shift's scores table.
        overlays: image id -> overlay path relative to the report's folder.
        context: Extra lines for the header (model versions, run id...).
    """
    esc = html.escape
    status_counts = scores["status"].value_counts().to_dict()
    scored = scores[scores["status"] == ScoreStatus.SCORED]
    flagged = scored[scored["is_anomalous"].astype(bool)].sort_values("score", ascending=False)
    counts = [
        ("frames", len(scores)),
        ("scored", status_counts.get(ScoreStatus.SCORED, 0)),
        ("flagged", len(flagged)),
        ("no component", status_counts.get(ScoreStatus.NO_COMPONENT, 0)),
        ("failed", status_counts.get(ScoreStatus.FAILED, 0)),
    ]
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>defectflow shift {esc(shift_id)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>Shift {esc(shift_id)}</h1>",
        "<p class='muted'>" + " · ".join(f"{esc(k)}: {esc(str(v))}" for k, v in context.items()) + "</p>",
        "<div class='counts'>",
        *(f"<div class='count' id='count-{esc(k.replace(' ', '-'))}'><b>{v}</b>{esc(k)}</div>" for k, v in counts),
        "</div>",
        f"<h2>Flagged frames ({len(flagged)})</h2>",
        _legend(shift_id),
    ]
    if flagged.empty:
        parts.append("<p id='no-flagged'>No frame was flagged in this shift.</p>")
    parts += _flagged_figures(flagged, overlays)
    parts += _not_scored_table(scores[scores["status"] != ScoreStatus.SCORED])
    parts.append("</body></html>")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(parts), encoding="utf-8")
    return path


def _flagged_figures(flagged: pd.DataFrame, overlays: dict[str, str]) -> list[str]:
    """One figure per flagged frame: its overlay and a caption with score and box."""
    esc = html.escape
    parts = ["<div class='grid' id='flagged'>"]
    for row in flagged.itertuples(index=False):
        image_id = esc(row.image_id)
        picture = overlays.get(row.image_id)
        image = f"<img src='{esc(picture)}' alt='overlay of {image_id}'>" if picture else "<p>(no overlay)</p>"
        parts.append(
            f"<figure class='flagged' data-image-id='{image_id}'>{image}<figcaption><b>{image_id}</b> "
            f"score {row.score:.3f} (raw {row.raw_score:.4f}) · box y{row.y0}:{row.y1} x{row.x0}:{row.x1}"
            "</figcaption></figure>"
        )
    return [*parts, "</div>"]


def _not_scored_table(problems: pd.DataFrame) -> list[str]:
    """The frames without a score, each with its status and reason (nothing when every frame was scored)."""
    if problems.empty:
        return []
    esc = html.escape
    parts = [f"<h2>Not scored ({len(problems)})</h2><table><tr><th>frame</th><th>status</th><th>reason</th></tr>"]
    for row in problems.itertuples(index=False):
        parts.append(f"<tr><td>{esc(row.image_id)}</td><td>{esc(row.status)}</td><td>{esc(str(row.reason))}</td></tr>")
    return [*parts, "</table>"]


def _legend(shift_id: str) -> str:
    """How to read the overlays, and where to zoom into a frame and record a verdict."""
    return (
        "<div class='legend'>frame with the scored box (yellow) · the box's heatmap: "
        f"0 <span class='bar' style='background:{colour_bar_css()}'></span> 1 "
        f"(pixel threshold {CONTOUR_LEVEL}) · the box with the threshold contour <span class='contour'></span></div>"
        "<p class='muted'>To zoom into a frame and record verdicts: <code>defectflow serve</code>, then open "
        f"shift {html.escape(shift_id)} (docs/review.md).</p>"
    )
