"""``make demo``: the whole nightly cycle on synthetic data, from nothing to a scored shift, in one command.

Generates a shift and training sets, trains the segmenter and the detector on pretrained features where it can
find them (``DEFECTFLOW_TEACHER_WEIGHTS``, ``DEFECTFLOW_WEIGHTS_DIR`` or timm's cache or hub; see README), promotes
both through the gate, ingests the shift, scores it on a local Dask cluster and prints a summary with the image
AUROC against the synthetic labels. Training budgets are epochs, not minutes, so the outcome does not depend on
how busy the machine is. Like every command it writes to ``--home`` or ``DEFECTFLOW_HOME`` (default
``./defectflow-demo``).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import pandas as pd
from rich.console import Console
from rich.panel import Panel
from rich.table import Table

from flows.cli import invoke
from models.detector.recipes import RECOMMENDED_BACKBONE
from models.segmentation.recipes import recipe_for as segmenter_recipe
from models.weight_sources import PRETRAINED, RANDOM_INIT, WeightsUnavailableError
from storage.report import REPORT_FILE
from storage.settings import PROGRESS_SETTING, load_settings
from storage.tables import SCORES_FILE, ScoreStatus, read_manifest, read_scores

console = Console()

#: The segmenter's encoder in the demo (small and fast); pretrained where a source has its weights.
SEGMENTER_BACKBONE = "resnet18"
#: Epochs of the demo's segmenter: 0.93-0.97 validation mIoU from scratch (docs/segmenter.md) whatever the load.
SEGMENTER_EPOCHS = 30
#: Epochs of the demo's detector (its recipe says 20; 8 keep the demo's run time reasonable on 2 cores).
DETECTOR_EPOCHS = 8
#: The detector when no pretrained teacher can be found: the small random-feature configuration.
RANDOM_TEACHER_BACKBONE = "resnet18"
#: The demo's shift.
SHIFT = "shift-demo"
#: The demo's line: one product on one belt under one camera, as in a plant, in frames of the camera's size (the
#: training sets and the shift alike: models trained on frames of half the size segmented the whole frame and
#: flagged every part). The generator's default draws a new part family, material and belt for every frame.
LINE = ["--product", "3", "--belt", "0", "--size", "1536", "2048"]


def _step(title: str) -> None:
    console.rule(f"[bold]{title}")


#: Setting that holds each model's absolute floor for a first champion.
_FLOORS = {"segmenter": "DEFECTFLOW_FLOOR_MIOU", "detector": "DEFECTFLOW_FLOOR_IMAGE_AUROC"}


def _promote(model: str, options: list[str], may_lower_floor: bool, why: str) -> None:
    """Promote through the gate at the production floor; if refused and allowed, again with the floor at 0, loudly.

    The gate refusing a model below the floor is the correct behaviour, and the demo shows it. Only where the demo
    allows it (a detector on random features: no pretrained weights were found) does it then promote with that
    floor at 0 for this process only, so that scoring can still be shown; nothing is written to the workspace's
    settings. Otherwise the model must pass its floor, or the demo stops.
    """
    from storage.registry import CHAMPION, alias_version
    from storage.settings import load_settings

    invoke(["promote", "--model", model, *options])
    if alias_version(load_settings(), model, CHAMPION) is not None:
        return
    if not may_lower_floor:
        raise SystemExit(f"the {model} missed the production floor ({_FLOORS[model]}); see the gate's reason above")
    console.print(
        Panel(
            f"The gate refused the {model}: it misses the production floor ({_FLOORS[model]}), as it should. {why} "
            f"To show scoring, the demo now promotes it with {_FLOORS[model]}=0 for this process only.",
            title="demo only: floor lowered",
            style="bold yellow",
        )
    )
    os.environ[_FLOORS[model]] = "0"
    invoke(["promote", "--model", model, *options])


def _weights(role: str, backbone: str) -> str:
    """The weights source the demo can use for ``role``, or ``"none"`` when no source has them."""
    from storage.settings import load_settings
    from tasks.backbone_weights import resolve_backbone_weights

    try:
        return resolve_backbone_weights(load_settings(), role, backbone, PRETRAINED)
    except WeightsUnavailableError:
        return RANDOM_INIT


def _home(argument: Path | None) -> Path:
    return (argument or Path(os.environ.get("DEFECTFLOW_HOME") or "defectflow-demo")).expanduser().resolve()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--home", type=Path, default=None, help="workspace [default: DEFECTFLOW_HOME, else ./defectflow-demo]"
    )
    parser.add_argument("--frames", type=int, default=24)
    args = parser.parse_args()
    start = time.perf_counter()
    home = _home(args.home)
    os.environ["DEFECTFLOW_HOME"] = str(home)
    os.environ.setdefault(PROGRESS_SETTING, "1")
    shift_dir, train_dir = home / "data" / "shift-demo", home / "data" / "train"
    teacher, encoder = _announce_weights()
    random_teacher = teacher == RANDOM_INIT

    _step("1/7 synthetic shift and training sets")
    if not (shift_dir / "labels.csv").is_file():
        shift = ["--images", str(args.frames), "--defect-rate", "0.25", "--seed", "7", *LINE]
        invoke(["synth", "shift", str(shift_dir), *shift])
    if not (train_dir / "mvtec" / "train" / "good").is_dir():
        counts = ["--train-good", "160", "--test-good", "30", "--test-defect", "6", *LINE]
        invoke(["synth", "dataset", str(train_dir), *counts])
    home_option = ["--home", str(home)]
    _train_both(train_dir, teacher, encoder, home_option)
    _step("4/7 promote both through the gate")
    _promote("segmenter", ["--eval-data", str(train_dir / "segmentation"), *home_option], False, "")
    # With pretrained features the detector passes the floor or the demo stops, like the segmenter; only random
    # features (no weights found, said in a banner at the start) lower it, to still show scoring.
    why = "Its teacher has random features (no pretrained weights found)."
    _promote("detector", ["--eval-data", str(train_dir / "mvtec"), *home_option], random_teacher, why)
    _step("5/7 ingest the shift")
    invoke(["ingest", str(shift_dir / "frames"), "--shift", SHIFT, *home_option])
    _step("6/7 score it on a local Dask cluster")
    score_start = time.perf_counter()
    invoke(["score", "--shift", SHIFT, *home_option])
    score_seconds = time.perf_counter() - score_start
    _step("7/7 summary")
    _summary(home, shift_dir, score_seconds, time.perf_counter() - start)
    console.print(
        "Detector teacher: "
        + ("RANDOM features (no pretrained weights found)" if random_teacher else f"pretrained ({teacher})")
        + "; segmenter encoder: "
        + ("trained from scratch" if encoder == RANDOM_INIT else f"pretrained ({encoder})")
    )
    console.print(f"MLflow UI:  .venv/bin/mlflow ui --backend-store-uri {load_settings(home).tracking_uri}")
    console.print("Prefect UI: .venv/bin/prefect server start   (then open http://127.0.0.1:4200)")


def _announce_weights() -> tuple[str, str]:
    """The teacher's and the encoder's weights, said aloud; a banner when the teacher would be random."""
    teacher = _weights("teacher", RECOMMENDED_BACKBONE)
    encoder = _weights("encoder", SEGMENTER_BACKBONE)
    if teacher == RANDOM_INIT:
        console.print(
            Panel(
                "No pretrained weights for the detector's teacher: DEFECTFLOW_TEACHER_WEIGHTS is not set, "
                f"DEFECTFLOW_WEIGHTS_DIR holds no {RECOMMENDED_BACKBONE}.pth and timm's hub cannot be reached.\n"
                "The demo runs on RANDOM FEATURES: its detector will be near chance. Set "
                "DEFECTFLOW_TEACHER_WEIGHTS to a mobilenetv2_100 state dict (README, quick start).",
                title="random features",
                style="bold yellow",
            )
        )
    else:
        console.print(f"detector teacher: {RECOMMENDED_BACKBONE}, pretrained weights from {teacher}")
    if encoder == RANDOM_INIT:
        console.print(
            f"segmenter encoder: no pretrained {SEGMENTER_BACKBONE} weights found; it trains from scratch "
            f"({SEGMENTER_EPOCHS} epochs: validation mIoU 0.93-0.96 measured, docs/segmenter.md)"
        )
    return teacher, encoder


def _train_both(train_dir: Path, teacher: str, encoder: str, home_option: list[str]) -> None:
    """Steps 2 and 3: the segmenter and the detector, each with its recipe and the demo's epoch budget."""
    segmenter_size = segmenter_recipe(SEGMENTER_BACKBONE).image_size
    _step(f"2/7 train the segmenter ({SEGMENTER_BACKBONE}, {segmenter_size} px, {SEGMENTER_EPOCHS} epochs)")
    segmentation = str(train_dir / "segmentation")
    options = ["--backbone", SEGMENTER_BACKBONE, "--epochs", str(SEGMENTER_EPOCHS), "--encoder-weights", encoder]
    invoke(["train", "segmenter", "--data", segmentation, *options, *home_option])
    backbone = RANDOM_TEACHER_BACKBONE if teacher == RANDOM_INIT else RECOMMENDED_BACKBONE
    _step(f"3/7 train the detector ({backbone} teacher, its recipe, {DETECTOR_EPOCHS} epochs)")
    options = ["--backbone", backbone, "--teacher-weights", teacher, "--epochs", str(DETECTOR_EPOCHS)]
    invoke(["train", "detector", "--data", str(train_dir / "mvtec"), *options, *home_option])


def _summary(home: Path, shift_dir: Path, score_seconds: float, total_seconds: float, shift: str = SHIFT) -> None:
    """What the night gave: counts, image AUROC against the synthetic labels, speed, where the results are."""
    from models.metrics.anomaly import auroc

    settings = load_settings(home)
    results = settings.results_dir(shift)
    scores, manifest = read_scores(results), read_manifest(results)
    labels = pd.read_csv(shift_dir / "labels.csv")
    joined = scores.merge(manifest[["image_id", "source_path"]], on="image_id").merge(
        labels, left_on="source_path", right_on="file"
    )
    scored = joined[joined["status"] == ScoreStatus.SCORED]
    truth = (scored["label"] == "defect").to_numpy()
    # raw scores: the normalised score is clipped to [0, 1], and ties at the clip lose ranking information
    raw = scored["raw_score"].astype(float).to_numpy()
    image_auroc = auroc(truth, raw) if 0 < truth.sum() < len(truth) else float("nan")
    table = Table(title="defectflow demo", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    statuses = scores["status"]
    for key, value in [
        ("frames", len(scores)),
        ("scored", len(scored)),
        ("flagged", int(scores["is_anomalous"].astype(bool).sum())),
        ("no component / failed", f"{(statuses == 'no_component').sum()} / {(statuses == 'failed').sum()}"),
        ("image AUROC vs synthetic labels", f"{image_auroc:.3f}"),
        ("scoring images/s (incl. cluster start)", f"{len(scores) / score_seconds:.2f}"),
        ("scores", results / SCORES_FILE),
        ("report", results / REPORT_FILE),
        ("heatmaps", f"{settings.store_path} (shift {shift}, heatmaps)"),
        ("demo took", f"{total_seconds / 60:.1f} min"),
    ]:
        table.add_row(key, str(value))
    console.print(table)


if __name__ == "__main__":
    main()
