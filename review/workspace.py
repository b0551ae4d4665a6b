"""What the review pages show of a workspace: its shifts, their frames with scores and verdicts, in review order.

A frame is a manifest row with pixels in the store; its scores row (if any) and its latest verdict are joined to
it. Tables are read once per change of their files, so paging through a shift does not re-read parquet.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from storage.ids import InvalidShiftId, validate_shift_id
from storage.scoring_run import ScoringRun, read_scoring_run
from storage.settings import Settings
from storage.tables import (
    MANIFEST_FILE,
    SCORES_FILE,
    STORED,
    ScoreStatus,
    ingested_shifts,
    read_manifest,
    read_scores,
)
from storage.verdicts import VerdictRecord

#: The status of a stored frame that has no scores row yet.
NOT_SCORED = "not_scored"
#: Status filters of the shift page: these, or one of the score statuses.
FLAGGED = "flagged"
STATUS_FILTERS = ("all", FLAGGED, *(status.value for status in ScoreStatus), NOT_SCORED)
REVIEWED_FILTERS = ("all", "yes", "no")


class NotFound(LookupError):
    """A shift or frame the workspace does not have; the message is short and safe to show."""


@dataclass(frozen=True)
class ShiftSummary:
    """One line of the shifts page."""

    shift_id: str
    frames: int
    scored: int
    flagged: int
    no_component: int
    failed: int
    not_scored: int
    models: tuple[str, ...]
    run: ScoringRun | None
    reviewed: int
    reviewed_flagged: int

    @property
    def flag_rate(self) -> float | None:
        """Flagged over scored frames, ``None`` before anything is scored."""
        return self.flagged / self.scored if self.scored else None


def shift_ids(settings: Settings) -> list[str]:
    """Shifts with a manifest, most recently ingested first (:func:`storage.tables.ingested_shifts`)."""
    return ingested_shifts(settings.results_root)


def results_dir(settings: Settings, shift_id: str) -> Path:
    """The shift's results folder, after checking the id and that the shift was ingested.

    Raises:
        NotFound: An id that is not a valid shift id, or a shift without a manifest.
    """
    try:
        validate_shift_id(shift_id)
    except InvalidShiftId:
        raise NotFound("no such shift") from None
    folder = settings.results_dir(shift_id)
    if not (folder / MANIFEST_FILE).is_file():
        raise NotFound(f"no shift {shift_id} in this workspace")
    return folder


def _stamp(path: Path) -> tuple[int, int]:
    try:
        status = path.stat()
    except FileNotFoundError:
        return (0, 0)
    return (status.st_mtime_ns, status.st_size)


def _frames(folder: Path) -> pd.DataFrame:
    """Stored frames with their score columns; unscored frames have the status :data:`NOT_SCORED`."""
    manifest = read_manifest(folder)
    stored = manifest[manifest["status"].isin([str(s) for s in STORED])][["image_id", "height", "width"]]
    scores = read_scores(folder).rename(columns={"status": "score_status"})
    frames = stored.merge(scores, on="image_id", how="left")
    frames["status"] = frames["score_status"].fillna(NOT_SCORED).astype(str)
    frames["is_anomalous"] = frames["is_anomalous"].fillna(False).astype(bool)
    frames["flagged"] = frames["is_anomalous"] & (frames["status"] == ScoreStatus.SCORED)
    frames["score"] = pd.to_numeric(frames["score"], errors="coerce")
    for column in ("reason", "segmenter_version", "detector_version"):
        frames[column] = frames[column].astype(object).where(frames[column].notna(), None)
    return frames.drop(columns=["score_status"]).set_index("image_id", drop=False).rename_axis(None)


class FrameTables:
    """Each shift's frame table, read again only when its manifest or scores file changes (thread-safe)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[tuple[tuple[int, int], ...], pd.DataFrame]] = {}

    def frames(self, shift_id: str) -> pd.DataFrame:
        """The shift's frames (index: image id). Raises :class:`NotFound` for an unknown shift."""
        folder = results_dir(self.settings, shift_id)
        stamp = (_stamp(folder / MANIFEST_FILE), _stamp(folder / SCORES_FILE))
        with self._lock:
            cached = self._cache.get(shift_id)
        if cached is not None and cached[0] == stamp:
            return cached[1]
        table = _frames(folder)
        with self._lock:
            self._cache[shift_id] = (stamp, table)
        return table

    def frame(self, shift_id: str, image_id: str) -> pd.Series:
        """One frame's row. Raises :class:`NotFound` for an unknown shift or a frame it does not have."""
        frames = self.frames(shift_id)
        if image_id not in frames.index:
            raise NotFound(f"no frame {image_id} in shift {shift_id}")
        return frames.loc[image_id]

    def summary(self, shift_id: str, latest: dict[tuple[str, str], VerdictRecord]) -> ShiftSummary:
        """The shifts page's line for one shift, with its review progress from ``latest`` verdicts."""
        frames = self.frames(shift_id)
        status = frames["status"].value_counts()
        reviewed = frames["image_id"].map(lambda image: (shift_id, image) in latest)
        versions = frames[["segmenter_version", "detector_version"]].dropna(how="all").drop_duplicates()
        models = tuple(
            f"segmenter {s if isinstance(s, str) else '(none)'} · detector {d}"
            for s, d in versions.itertuples(index=False)
        )
        return ShiftSummary(
            shift_id=shift_id,
            frames=len(frames),
            scored=int(status.get(ScoreStatus.SCORED.value, 0)),
            flagged=int(frames["flagged"].sum()),
            no_component=int(status.get(ScoreStatus.NO_COMPONENT.value, 0)),
            failed=int(status.get(ScoreStatus.FAILED.value, 0)),
            not_scored=int(status.get(NOT_SCORED, 0)),
            models=models,
            run=read_scoring_run(self.settings.results_dir(shift_id)),
            reviewed=int(reviewed.sum()),
            reviewed_flagged=int((reviewed & frames["flagged"]).sum()),
        )


def with_verdicts(frames: pd.DataFrame, shift_id: str, latest: dict[tuple[str, str], VerdictRecord]) -> pd.DataFrame:
    """``frames`` with the latest verdict of each (``verdict``, ``reviewer``: ``None`` where not reviewed)."""
    records = [latest.get((shift_id, image)) for image in frames["image_id"]]
    return frames.assign(  # object columns: pandas' string columns would turn "no verdict" into NaN
        verdict=pd.Series([r.verdict.value if r else None for r in records], index=frames.index, dtype=object),
        reviewer=pd.Series([r.reviewer if r else None for r in records], index=frames.index, dtype=object),
    )


def review_order(frames: pd.DataFrame) -> pd.DataFrame:
    """Flagged frames first, then the other scored ones, then the rest; highest score first within each."""
    rank = (~frames["flagged"]).astype(int) + (frames["status"] != ScoreStatus.SCORED).astype(int)
    keyed = frames.assign(_rank=rank, _score=frames["score"].fillna(-1.0))
    ordered = keyed.sort_values(["_rank", "_score", "image_id"], ascending=[True, False, True], kind="stable")
    return ordered.drop(columns=["_rank", "_score"])


def filter_frames(
    frames: pd.DataFrame,
    status: str = "all",
    score_min: float | None = None,
    score_max: float | None = None,
    reviewed: str = "all",
) -> pd.DataFrame:
    """The frames matching the shift page's filters (``frames`` carries :func:`with_verdicts`' columns)."""
    keep = pd.Series(True, index=frames.index)
    if status == FLAGGED:
        keep &= frames["flagged"]
    elif status != "all":
        keep &= frames["status"] == status
    if score_min is not None:
        keep &= frames["score"] >= score_min
    if score_max is not None:
        keep &= frames["score"] <= score_max
    if reviewed != "all":
        keep &= frames["verdict"].notna() == (reviewed == "yes")
    return frames[keep]


def next_unreviewed(ordered: pd.DataFrame, after: str) -> str | None:
    """The first frame without a verdict after ``after`` in review order, wrapping around; ``None`` when all are."""
    ids = list(ordered["image_id"])
    start = ids.index(after) + 1 if after in ids else 0
    pending = set(ordered.loc[ordered["verdict"].isna(), "image_id"])
    for image in ids[start:] + ids[:start]:
        if image in pending and image != after:
            return image
    return None
