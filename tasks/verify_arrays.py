"""Task: read stored frames or heatmaps back and compare them with the checksums written with them."""

from __future__ import annotations

from prefect import task

from storage.frame_store import FrameStore


@task(name="verify-arrays", retries=1, retry_delay_seconds=2)
def verify_arrays(store_path: str, shift_id: str, kind: str, image_ids: list[str]) -> dict[str, str]:
    """Problems of the arrays of ``image_ids`` in ``shifts/<shift>/<kind>`` (``images`` or ``heatmaps``).

    Returns:
        ``{image_id: what is wrong}`` for the damaged ones only (read on a worker; the flow gets small records).
    """
    store = FrameStore(store_path)
    problems = {image_id: store.array_problem(shift_id, kind, image_id) for image_id in image_ids}
    return {image_id: problem for image_id, problem in problems.items() if problem}
