"""A tiny end-to-end run on generated toy data: train, calibrate, evaluate, save, load, score crops."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from models.detector.config import DetectorConfig
from models.detector.evaluation import evaluate_detector
from models.detector.inference import score_crops
from models.detector.package import load_detector, save_detector
from models.detector.training import DetectorTrainResult, train_detector
from tests.threads import one_torch_thread
from tests.toy_data import make_toy_dataset

# Deep random teacher: on the toy blobs it beats timm's shallow one (the synthetic parts showed the opposite).
TINY = {
    "vit_dim": 64,
    "vit_heads": 4,
    "vit_depth": 1,
    "embedding_channels": 128,
    "student_widths": (96, 48, 32),
    "teacher_zero_init_last": False,
}


@pytest.fixture(scope="module")
def toy_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_toy_dataset(tmp_path_factory.mktemp("toy"), n_train=24, n_test_good=8, n_test_defect=8, size=64)


@pytest.fixture(scope="module")
def trained(toy_root: Path) -> tuple[DetectorTrainResult, float, list[dict]]:
    epochs: list[dict] = []
    with one_torch_thread():
        start = time.perf_counter()
        result = train_detector(
            DetectorConfig.small(image_size=64, **TINY),
            toy_root,
            epochs=10,
            batch_size=8,
            val_fraction=0.2,
            seed=0,
            fusion_images=16,
            on_epoch=epochs.append,
        )
        seconds = time.perf_counter() - start
    return result, seconds, epochs


def test_tiny_training_run_detects_toy_defects(trained, toy_root: Path) -> None:
    result, _, epochs = trained
    assert [e["epoch"] for e in epochs] == list(range(1, 11)) and all("val_loss" in e for e in epochs)
    assert result.history[-1]["loss"] < result.history[0]["loss"]
    assert len(result.train_names) == 19 and len(result.val_names) == 5
    assert not set(result.train_names) & set(result.val_names)
    assert result.fusion["fitted"] and sum(result.fusion["weights"]) == pytest.approx(1.0, abs=1e-5)
    assert min(result.fusion["weights"]) >= 0
    assert result.calibration.method == "normal-quantile"
    assert not result.model.training

    evaluation = evaluate_detector(result.model, result.calibration, toy_root, worst_k=3)
    assert evaluation["image_auroc"] >= 0.8
    assert evaluation["pixel_auroc"] >= 0.8
    for key in ("aupro", "image_f1_max", "pixel_f1_max", "ms_per_image"):
        assert evaluation[key] >= 0 and np.isfinite(evaluation[key])
    assert set(evaluation["per_defect"]) == {"blob"}
    assert {"image_auroc", "pixel_auroc", "aupro"} <= set(evaluation["per_defect"]["blob"])
    assert len(evaluation["worst_cases"]["missed_defects"]) == 3
    assert set(evaluation["curves"]) == {"image_roc", "image_pr", "pixel_roc", "pixel_pr"}
    assert evaluation["at_threshold"]["tp"] + evaluation["at_threshold"]["fn"] == 8


def test_saved_package_scores_crops_like_the_trained_model(trained, toy_root: Path, tmp_path: Path) -> None:
    result = trained[0]
    save_detector(tmp_path / "pkg", result.model, result.calibration, result.package_extra())
    model, calibration, package = load_detector(tmp_path / "pkg")
    assert calibration == result.calibration
    assert package.extra["training"]["epochs_completed"] == 10
    assert package.extra["training"]["teacher_weights"]["source"] == "random"
    crops = [np.asarray(Image.open(p)) for p in sorted((toy_root / "test" / "blob").glob("*.png"))[:3]]
    crops.append(np.asarray(Image.open(sorted((toy_root / "test" / "good").glob("*.png"))[0]).convert("L")))
    loaded = score_crops(model, crops, calibration, batch_size=2)
    original = score_crops(result.model, crops, result.calibration, batch_size=4)
    np.testing.assert_allclose(loaded.raw_scores, original.raw_scores, rtol=1e-5)
    assert loaded.maps.shape == (4, 64, 64) and loaded.maps.min() >= 0 and loaded.maps.max() <= 1
    np.testing.assert_array_equal(loaded.anomalous, loaded.scores >= 0.5)


def test_time_budget_and_labelled_calibration(toy_root: Path) -> None:
    torch.manual_seed(0)
    result = train_detector(
        DetectorConfig.small(image_size=64, **TINY),
        toy_root,
        epochs=50,
        batch_size=8,
        max_minutes=0.001,
        fit_fusion=False,
        labelled_dir=toy_root,
    )
    assert result.stopped_by_time and result.epochs_completed == 1
    assert result.fusion["fitted"] is False
    assert result.calibration.method == "f1" and result.calibration.details["n_labelled_defective"] == 8


def test_training_errors_say_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="train/good"):
        train_detector(DetectorConfig.small(image_size=64, **TINY), tmp_path, epochs=1)


def test_experiment_command_writes_a_summary(toy_root: Path, tmp_path: Path) -> None:
    import json

    from benchmarks.detector_experiment import main

    config = json.dumps({**TINY, "student_widths": list(TINY["student_widths"])})
    out = tmp_path / "summary.json"
    args = [str(toy_root), "--image-size", "64", "--epochs", "2", "--batch-size", "8", "--config", config]
    assert main([*args, "--out", str(out), "--package", str(tmp_path / "pkg")]) == 0
    summary = json.loads(out.read_text())
    assert summary["epochs_completed"] == 2 and set(summary["per_defect"]) == {"blob"}
    assert (tmp_path / "pkg" / "weights.pt").is_file()
