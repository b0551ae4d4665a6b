"""Workers load and warm a run's models before its first batch, and workers that join later do so when they join.

A Dask worker plugin: registered by the flow at the start of a scoring run (``flows/runtime.py``,
:func:`~flows.runtime.preload_on_workers`), it runs on every worker of the cluster, a remote one included, and on
every worker that joins afterwards. Without it the first batch on each worker paid the import of torch, the
models' load and their first forward. It imports torch only on the worker, inside :meth:`ModelPreload.setup`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import Any

from distributed.diagnostics.plugin import WorkerPlugin

from tasks.model_ref import ModelRef

logger = logging.getLogger(__name__)

#: One preload per cluster: a run registers its models under this name and replaces the previous run's.
PLUGIN_NAME = "defectflow-model-preload"


def warm_models(segmenter: ModelRef | None, detector: ModelRef) -> float:
    """Load ``segmenter`` and ``detector`` into this process's cache and run one small forward through each.

    The first forward allocates buffers and picks kernels; a blank frame and crop at the models' own sizes pay
    that here. Returns the seconds taken.
    """
    import numpy as np

    from models.detector.inference import score_crops
    from models.segmentation.inference import predict_masks
    from tasks.model_cache import compute_device, get_detector, get_model

    start = time.perf_counter()
    device = compute_device()
    if segmenter is not None:
        model, _, _ = get_model(segmenter)
        side = int(model.config.input_long_side)
        predict_masks(model, [np.zeros((side * 3 // 4, side, 3), dtype=np.uint8)], device=device)
    model, _, _ = get_detector(detector)
    side = int(model.input_size)
    score_crops(model, [np.zeros((side, side, 3), dtype=np.uint8)], autocast=device.type == "cuda")
    return time.perf_counter() - start


class ModelPreload(WorkerPlugin):
    """Loads and warms a scoring run's models on each worker, off the worker's event loop.

    A model that cannot be loaded is logged, not raised: the batches then fail with the error where the run
    reports it per frame, as they would without a preload.
    """

    name = PLUGIN_NAME

    def __init__(self, segmenter: ModelRef | None, detector: ModelRef) -> None:
        self.segmenter = segmenter
        self.detector = detector

    async def setup(self, worker: Any) -> None:
        try:
            seconds = await asyncio.to_thread(warm_models, self.segmenter, self.detector)
        except Exception as error:  # the batches meet it again and report it
            logger.warning(
                "could not preload %s on pid %d: %s: %s", self.detector.uri, os.getpid(), type(error).__name__, error
            )
            return
        logger.info("preloaded the scoring models in %.1f s (pid %d)", seconds, os.getpid())
