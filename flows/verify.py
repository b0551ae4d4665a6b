"""Flow ``verify_shift``: read back every stored frame and heatmap of a shift and compare it with its checksum.

zarr reads a missing chunk as zeros, so a damaged store looks like black frames; the checksums written with
each array tell the difference. What is damaged is marked where the next command acts on it: a damaged frame's
manifest row becomes ``damaged`` (the next ingest of the shift decodes it again from its source), a damaged
heatmap's score row becomes ``failed`` (the next scoring scores the frame again).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from prefect import flow

from flows.batching import batches
from flows.progress import track_batches
from flows.results import VerifyResult
from flows.runtime import default_task_runner
from models.errors import DefectflowError
from storage.frame_store import FrameStore
from storage.ids import validate_shift_id
from storage.score_parts import consolidate
from storage.settings import load_settings
from storage.shift_lock import shift_lock
from storage.tables import FINISHED, STORED, FrameStatus, ScoreStatus, read_manifest, write_manifest, write_scores
from tasks.verify_arrays import verify_arrays


class NothingToVerify(DefectflowError, ValueError):
    """The shift has no manifest in this workspace; the message says which command fixes it."""


def _check(store_path: str, shift_id: str, kind: str, image_ids: list[str], batch_size: int) -> dict[str, str]:
    problems: dict[str, str] = {}
    chunks = batches(image_ids, batch_size)
    for _, future in track_batches(
        lambda chunk: verify_arrays.submit(store_path, shift_id, kind, chunk), chunks, f"verifying {kind}", "arrays"
    ):
        problems.update(future.result())
    return dict(sorted(problems.items()))


@flow(name="verify_shift", log_prints=True, task_runner=default_task_runner())
def verify_shift(shift_id: str, home: str | None = None, batch_size: int = 16) -> VerifyResult:
    """Check a shift's stored frames and heatmaps against their checksums and mark what is damaged.

    Args:
        shift_id: The shift.
        home: Workspace directory.
        batch_size: Arrays per Dask task.

    Returns:
        Summary: arrays checked, damaged frames and heatmaps with what is wrong, and the commands that repair them.
    """
    validate_shift_id(shift_id)
    settings = load_settings(home).ensure()
    with shift_lock(settings.home, shift_id, "verify"):
        results_dir = settings.results_dir(shift_id)
        manifest = read_manifest(results_dir)
        if manifest.empty:
            raise NothingToVerify(f"shift {shift_id} was never ingested in {settings.home}; check --shift and --home")
        store = FrameStore(settings.store_path)
        source = store.shift_source(shift_id) or "<the shift's source folder>"
        repair_frames = f"defectflow ingest {source} --shift {shift_id}"
        repair_heatmaps = f"defectflow score --shift {shift_id}"

        stored = manifest["status"].isin(STORED)
        frames = _check(str(store.path), shift_id, "images", sorted(manifest.loc[stored, "image_id"]), batch_size)
        if frames:
            damaged = manifest["image_id"].isin(list(frames))
            manifest.loc[damaged, "status"] = str(FrameStatus.DAMAGED)
            manifest.loc[damaged, "reason"] = [
                f"damaged in the store: {frames[i]}; restore it with '{repair_frames}'"
                for i in manifest.loc[damaged, "image_id"]
            ]
            write_manifest(results_dir, manifest)

        scores = consolidate(results_dir)
        finished = scores["status"].isin(FINISHED)
        heatmaps = _check(str(store.path), shift_id, "heatmaps", sorted(scores.loc[finished, "image_id"]), batch_size)
        if heatmaps:
            damaged = scores["image_id"].isin(list(heatmaps))
            scores.loc[damaged, ["score", "raw_score"]] = np.nan
            scores.loc[damaged, "is_anomalous"] = False
            scores.loc[damaged, "status"] = str(ScoreStatus.FAILED)
            scores.loc[damaged, "reason"] = [
                f"heatmap damaged in the store: {heatmaps[i]}; score it again with '{repair_heatmaps}'"
                for i in scores.loc[damaged, "image_id"]
            ]
            write_scores(results_dir, pd.DataFrame(scores))
        return VerifyResult(
            shift_id=shift_id,
            frames_checked=int(stored.sum()),
            heatmaps_checked=int(finished.sum()),
            damaged_frames=frames,
            damaged_heatmaps=heatmaps,
            repair_frames=repair_frames if frames else None,
            repair_heatmaps=repair_heatmaps if heatmaps else None,
        )
