"""Model work goes to the workers that declare a GPU, as far as a machine without one can check it.

README's "existing Dask cluster" starts GPU hosts' workers with ``--resources GPU=1``; the scoring flow then
annotates its batches with that resource (``flows.scoring._gpu_annotation``), so they run there and nowhere else.
The routing needs no GPU: here the declared worker scores on its CPU, the one part of the CUDA path (bf16 autocast
on a real device) a CPU-only machine cannot run.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from distributed import Client, LocalCluster, get_task_stream

from flows.runtime import dask_task_runner
from flows.scoring import nightly_scoring
from storage.settings import load_settings
from tests.pipeline import ingest_copy

FRAMES = 4


def test_scoring_batches_run_only_on_the_worker_that_declares_a_gpu(workspace) -> None:
    shift = "gpu-routing"
    ingest_copy(workspace, shift, frames=FRAMES)
    cluster = LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None)
    dask_cli = Path(sys.executable).with_name("dask")
    gpu_worker = subprocess.Popen(
        [str(dask_cli), "worker", cluster.scheduler_address, "--nthreads", "1", "--resources", "GPU=1"],
        env=os.environ.copy(),  # the Prefect API URL of the session, as a deployment's workers get it
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        with Client(cluster.scheduler_address) as client:
            client.wait_for_workers(2, timeout=120)
            workers = client.scheduler_info(n_workers=-1)["workers"]
            gpu = [address for address, worker in workers.items() if worker.get("resources", {}).get("GPU")]
            assert len(gpu) == 1, workers
            runner = dask_task_runner(load_settings(workspace.home), address=cluster.scheduler_address, workers=2)
            with get_task_stream(client) as stream:
                result = nightly_scoring.with_options(task_runner=runner)(
                    shift_id=shift, home=str(workspace.home), batch_size=1
                )
        assert result.scored_this_run == FRAMES and result.failed == 0
        batches = [record["worker"] for record in stream.data if record["key"].startswith("score_frames-")]
        assert len(batches) == FRAMES, [record["key"] for record in stream.data]
        assert set(batches) == set(gpu), "a scoring batch ran on a worker without the GPU resource"
    finally:
        gpu_worker.terminate()
        gpu_worker.wait(timeout=60)
        cluster.close()
