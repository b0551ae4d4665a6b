"""Two-stage against one-stage inspection on a labelled synthetic shift: image AUROC, pixel AUROC, images/s.

The method paper's central claim on our data. Two pipelines score the same frames:

* two-stage: the segmenter finds the component, the frame is cropped to it, and a detector trained on component
  crops scores the crop (the production path, ``defectflow score``);
* one-stage: a detector trained on whole good frames scores the whole frame resized to its square input
  (``defectflow score --one-stage``).

Each pipeline gets the training data that matches what it scores, the same backbone (resnet18), input size and
time budget, so the comparison is of the pipelines, not of how much training either got. Example::

    .venv/bin/python -m benchmarks.two_stage_vs_one_stage --quick                      # smoke run, minutes
    .venv/bin/python -m benchmarks.two_stage_vs_one_stage --frames 24 --minutes 4 --out benchmarks/out/tvo.json

What it does, all in ``--work`` (default ``benchmarks/out/two-stage-vs-one-stage``; both sub-folders it writes,
``data/`` and ``home/``, are replaced on every run, so a run never scores with a previous run's models):

1. Data. A labelled test shift (``synth.shift.generate_shift``: ``--frames`` frames of ``--size``, ``--defect-rate``,
   seed ``--seed``); the crop training set and the segmentation set (``synth.dataset.generate_dataset``, frames of
   the same size, seed + 1); and the one-stage training set: ``--train-good`` good frames from ``generate_shift``
   (defect rate 0, seed + 2), box-downscaled to a long side of ``max(512, --image-size)`` and written as
   ``train/good`` of an MVTec-layout folder. The downscale only saves disk and decoding time: the detector resizes
   every input to its square ``--image-size`` anyway, with antialiasing, so it sees (almost) the same pixels as
   when it scores a full-resolution frame.
2. Training through the real command line in a fresh workspace (``home/``, its own SQLite MLflow registry): the
   segmenter, the crop detector and the full-frame detector, each with the ``--minutes`` budget (``--seg-minutes``
   for the segmenter). Both detectors use the ``--backbone`` teacher (default the recommended
   ``mobilenetv2_100``) with pretrained weights from the usual sources (``DEFECTFLOW_TEACHER_WEIGHTS``,
   ``DEFECTFLOW_WEIGHTS_DIR``, timm; the run stops with the ways out when none has them; ``--teacher-weights
   none`` for random features); the segmenter is a resnet18 AMAM U-Net, pretrained where a source has resnet18
   weights and trained from scratch otherwise. The segmenter and the crop detector are promoted to champion; the
   full-frame detector is referenced by its version, ``models:/detector/<version>``. This process sets
   ``DEFECTFLOW_FLOOR_IMAGE_AUROC`` and ``DEFECTFLOW_FLOOR_MIOU`` to 0 (for itself only, and says so): the
   benchmark compares pipelines whatever their quality.
3. The shift is ingested twice, under two shift ids, so the heatmaps of both pipelines stay in the store side by
   side; each is scored by the ``nightly_scoring`` flow on a LocalCluster, as ``defectflow score`` runs it.
4. Metrics per pipeline:

   * image AUROC of ``raw_score`` against ``labels.csv`` (the normalised ``score`` is clipped to [0, 1], and its
     ties at 0 and 1 lose ranking information; it is in the JSON too). Every frame counts: a frame that was not
     scored (``no_component``: the segmenter found no part; ``failed``) ranks below every scored frame, i.e.
     "nothing wrong", which is what the pipeline reports for it; the table says how many there were. The JSON
     also has the AUROC of the scored frames alone.
   * pixel AUROC at full resolution: every pixel of every frame, heatmaps as the scoring flow stored them
     (float16, zero outside the scored region, all zero for a frame that was not scored) against the defect masks
     (``masks/defects/``). Exact, not subsampled: heatmaps are float16, so per-value counts of defect and normal
     pixels (65,536 bins) are accumulated frame by frame and the ROC is built from them, with ties counted one
     half like ``models.metrics.anomaly.auroc``, which it is checked against when there are at most
     ``CROSS_CHECK_PIXELS`` pixels (memory stays at one frame whatever the shift's size).
   * images/s of the flow's scoring phase (its summary: submit to last result over the frames it scored; cluster
     start, report and MLflow logging excluded) and, unless ``--no-bare``, of the bare per-batch computation
     (``tasks.score_frames`` called directly in this process with the models loaded: read, [segment, crop],
     detect, paste and write the heatmap), as ``benchmarks.scoring`` measures it.

It prints a markdown table ready to paste into the docs, the exact command, and writes everything as JSON with
``--out``. ``--quick`` is a smoke run (6 frames of 384x512, 0.3 min per model, 128 px inputs): it proves the
benchmark works end to end; its numbers mean nothing.
"""

from __future__ import annotations

import shlex
import sys
import time

from benchmarks.two_stage.data import generate_data
from benchmarks.two_stage.evaluation import evaluate
from benchmarks.two_stage.options import isolate_environment, parse_args, prepare_work, say
from benchmarks.two_stage.report import BenchmarkRun, print_report, write_results
from benchmarks.two_stage.runs import ingest_shifts, make_pipelines, score_shifts, train_models


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark end to end and print (and optionally write) the comparison."""
    args = parse_args(argv, description=__doc__)
    command = ".venv/bin/python -m benchmarks.two_stage_vs_one_stage " + shlex.join(
        sys.argv[1:] if argv is None else argv
    )
    started = time.perf_counter()
    steps: dict[str, float] = {}
    data, home = prepare_work(args.work)
    notes = isolate_environment(home)
    for note in notes:
        say(note)
    say(f"detector teacher weights: {args.teacher_weights}; segmenter encoder weights: {args.encoder_weights}")

    from flows.runtime import prefect_api

    clock = time.perf_counter()
    paths = generate_data(args, data)
    steps["data"] = time.perf_counter() - clock
    with prefect_api():  # one temporary Prefect server for every command of the run
        clock = time.perf_counter()
        versions = train_models(args, paths, home)
        steps["training_and_promotion"] = time.perf_counter() - clock
        pipelines = make_pipelines(args, versions)
        ingest_shifts(pipelines, paths["frames_dir"], args, home, steps)
        score_shifts(pipelines, args, steps)
    for pipeline in pipelines:
        clock = time.perf_counter()
        pipeline.metrics = evaluate(pipeline, paths, args.size)
        steps[f"metrics {pipeline.shift_id}"] = time.perf_counter() - clock
    run = BenchmarkRun(args, command, notes, paths, versions, pipelines, steps, time.perf_counter() - started)
    print_report(run)
    if args.out:
        write_results(run, args.out)


if __name__ == "__main__":
    main()
