"""What an ingest run does with each listed file, given the shift's manifest so far.

The rules a plant can rely on:

* The first ingest of a path is the record. Once a frame is stored (``ingested``), its pixels, manifest row and
  scores never change. If the source file later has other bytes, the new file is refused: the row keeps the
  first hash and says in its reason that the source changed, and the run's summary lists it.
* A file that stored nothing (``quarantined``) is decided again on every run: if its bytes changed (a camera
  finished writing it) or a setting that refused it changed (the pixel limit), it can become ``ingested``; when
  the decision comes out the same, the earlier row stays untouched, so a re-run changes nothing.
* A frame that ``defectflow verify`` found ``damaged`` is decoded again from its source, if the source still
  has the recorded bytes.
* Image ids are unique within a shift; a path whose id is taken by another path is quarantined, never written
  over the other frame.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from storage.ids import image_id_for
from storage.tables import STORED, FrameStatus

CHANGED_NOTE = "source file changed after ingest"

Row = dict[str, Any]


@dataclass
class IngestPlan:
    """The sorted outcome of planning: rows kept from earlier runs, rows decided here, files to decode.

    The manifest of the run is ``kept`` and the settled (:meth:`settle`) ``decided`` and decoded rows.
    """

    kept: list[Row] = field(default_factory=list)
    decided: list[Row] = field(default_factory=list)
    jobs: list[Row] = field(default_factory=list)
    retried: dict[str, Row] = field(default_factory=dict)  # earlier rows decided again, by source path
    refused: dict[str, str] = field(default_factory=dict)  # changed sources of stored frames: path -> reason

    def settle(self, rows: list[Row]) -> tuple[list[Row], int]:
        """Rows decided or decoded in this run as the manifest keeps them, and how many of them are new or changed.

        A retried row whose decision came out as before is replaced by the earlier row (same timestamp). Called
        per batch as results come in, so that the flow need not hold a shift's rows (issue #11).
        """
        settled: list[Row] = []
        fresh = 0
        for row in rows:
            earlier = self.retried.get(row["source_path"])
            same = earlier is not None and (earlier["status"], earlier["reason"]) == (row["status"], row["reason"])
            settled.append(earlier if same else row)
            fresh += not same
        return settled, fresh


def _change_noted(row: Row, sha256: str) -> Row:
    """``row`` with its reason saying whether the source now holds other bytes than the stored frame's."""
    reasons = [r for r in str(row["reason"] or "").split("; ") if r and not r.startswith(CHANGED_NOTE)]
    if sha256 and sha256 != row["sha256"]:
        reasons.append(
            f"{CHANGED_NOTE} (now sha256 {sha256[:12]}), refused: the first ingest stays the record, "
            "ingest the new file under another name or shift"
        )
    return {**row, "reason": "; ".join(reasons)}


def plan_ingest(files: list[Row], previous: pd.DataFrame) -> IngestPlan:
    """Sort hashed files (``source_path``, ``sha256``, ``bytes``, ``unreadable``) against the earlier manifest.

    The first file (in path order) with given bytes is decoded; later ones are ``duplicate`` of it, also across
    runs.
    """
    earlier_rows = previous.to_dict("records")
    by_path = {row["source_path"]: row for row in earlier_rows}
    first_with_sha: dict[str, str] = {}
    for row in earlier_rows:
        if row["status"] != FrameStatus.DUPLICATE and row["sha256"]:
            first_with_sha.setdefault(row["sha256"], row["source_path"])
    id_owner = {row["image_id"]: row["source_path"] for row in earlier_rows}
    plan = IngestPlan()
    for item in files:
        path, sha = item["source_path"], item["sha256"]
        earlier = by_path.get(path)
        if earlier is not None and earlier["status"] in STORED:
            if earlier["status"] == FrameStatus.DAMAGED and sha == earlier["sha256"]:
                plan.jobs.append({k: earlier[k] for k in ("image_id", "source_path", "sha256", "bytes")})
                continue
            row = _change_noted(earlier, sha)
            if sha and sha != earlier["sha256"]:
                plan.refused[path] = row["reason"].rsplit("; ", 1)[-1]
            plan.kept.append(row)
            continue
        if earlier is not None and earlier["sha256"] == sha:
            if earlier["status"] != FrameStatus.QUARANTINED:
                plan.kept.append(earlier)
                continue
            plan.retried[path] = earlier
        image_id = earlier["image_id"] if earlier is not None else image_id_for(path)
        base = {"image_id": image_id, "source_path": path, "sha256": sha, "bytes": item["bytes"]}
        blank = {"height": None, "width": None, "channels": None, "dtype": None, "ingested_at": None}
        owner = id_owner.setdefault(image_id, path)
        if item.get("unreadable"):
            plan.decided.append({**base, **blank, "status": FrameStatus.QUARANTINED, "reason": item["unreadable"]})
        elif item["bytes"] == 0:
            plan.decided.append({**base, **blank, "status": FrameStatus.QUARANTINED, "reason": "empty file (0 bytes)"})
        elif sha in first_with_sha and first_with_sha[sha] != path:
            reason = f"same bytes as {first_with_sha[sha]}"
            plan.decided.append({**base, **blank, "status": FrameStatus.DUPLICATE, "reason": reason})
        elif owner != path:
            reason = f"image id {image_id} is already the id of {owner}; rename this file and re-run the ingest"
            plan.decided.append({**base, **blank, "status": FrameStatus.QUARANTINED, "reason": reason})
        else:
            first_with_sha[sha] = path
            plan.jobs.append(base)
    return plan
