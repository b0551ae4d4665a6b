"""A tiny end-to-end run: train on generated shapes, predict, evaluate, crop."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from models.cropping import crop_region
from models.segmentation.augmentation import AugmentConfig
from models.segmentation.builder import build_segmenter
from models.segmentation.config import SegmenterConfig
from models.segmentation.inference import evaluate_segmenter, predict_mask, predict_masks
from models.segmentation.training import train_segmenter

TINY = {"amam_channels": 16, "decoder_channels": (32, 24, 16, 16), "head_channels": 8, "input_long_side": 64}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def make_shapes_dataset(root: Path, count: int = 16, size: int = 64, seed: int = 0) -> Path:
    """Coloured rectangles and ellipses (class 1) on a noisy grey background."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir(parents=True)
    yy, xx = np.mgrid[0:size, 0:size]
    for index in range(count):
        image = rng.normal(70, 20, (size, size, 3))
        cy, cx = rng.uniform(0.3, 0.7, 2) * size
        ry, rx = rng.uniform(0.12, 0.28, 2) * size
        if index % 2:
            mask = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
        else:
            mask = (np.abs(yy - cy) <= ry) & (np.abs(xx - cx) <= rx)
        colour = rng.uniform(140, 250, 3)
        image[mask] = colour + rng.normal(0, 10, (int(mask.sum()), 3))
        Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).save(root / "images" / f"s{index:02d}.png")
        Image.fromarray(mask.astype(np.uint8) * 255).save(root / "masks" / f"s{index:02d}.png")
    return root


@pytest.fixture(scope="module")
def shapes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_shapes_dataset(tmp_path_factory.mktemp("shapes"))


@pytest.fixture(scope="module")
def trained(shapes: Path):
    epochs: list[dict[str, float]] = []
    result = train_segmenter(
        SegmenterConfig.small(**TINY),
        shapes,
        image_size=64,
        epochs=6,
        batch_size=4,
        lr=3e-3,
        val_fraction=0.25,
        seed=0,
        min_steps_per_epoch=6,
        augment=AugmentConfig(rotation_degrees=10, brightness=0.1, contrast=0.1, saturation=0.1, hue=0.0),
        num_threads=1,  # robust on a busy shared machine: 2 OpenMP threads spin while the other core is taken
        on_epoch=epochs.append,
    )
    return result, epochs


def test_training_learns_the_shapes(shapes: Path, trained) -> None:
    result, epochs = trained
    assert result.num_train == 12 and result.num_val == 4
    assert not set(result.train_files) & set(result.val_files)
    assert [e["epoch"] for e in epochs] == list(range(1, len(result.history) + 1))
    assert {"epoch", "train_loss", "val_miou", "val_pixel_accuracy", "seconds"} <= epochs[0].keys()
    assert result.best_metrics["val_miou"] == max(e["val_miou"] for e in epochs)
    assert not result.model.training

    torch.manual_seed(0)
    untrained = build_segmenter(SegmenterConfig.small(**TINY)).eval()
    baseline = evaluate_segmenter(untrained, shapes, image_size=64)
    scores = evaluate_segmenter(result.model, shapes, image_size=64)
    assert scores["images"] == 16
    assert scores["miou"] > 0.7, (scores, result.history)
    assert scores["miou"] > baseline["miou"] + 0.2
    assert set(scores["per_class_iou"]) == {"background", "component"}
    assert scores["ms_per_image"] > 0


def test_predict_and_crop_on_a_bigger_frame(shapes: Path, trained) -> None:
    result, _ = trained
    image = np.asarray(Image.open(shapes / "images" / "s00.png"))
    truth = np.asarray(Image.open(shapes / "masks" / "s00.png")) > 0
    big = np.kron(image, np.ones((3, 3, 1), np.uint8))  # a 192x192 "camera frame"
    labels = predict_mask(result.model, big)  # default long side: config.input_long_side = 64
    assert labels.shape == (64, 64) and labels.dtype == np.uint8
    assert (labels.astype(bool) & truth).sum() / (labels.astype(bool) | truth).sum() > 0.6

    region = crop_region(labels, big.shape[:2])
    assert region.status == "ok"
    ys, xs = np.nonzero(np.kron(truth, np.ones((3, 3), bool)))
    box = region.box
    assert box is not None
    assert box.y0 <= ys.min() + 6 and box.y1 >= ys.max() - 6 and box.x0 <= xs.min() + 6 and box.x1 >= xs.max() - 6

    grey16 = big[..., 0].astype(np.uint16) * 257
    batch = predict_masks(result.model, [big, grey16, big[:150]], long_side=64)
    assert [b.shape for b in batch] == [(64, 64), (64, 64), (50, 64)]
    assert np.array_equal(batch[0], labels)


def test_time_budget_stops_training_and_weight_average_is_kept(shapes: Path) -> None:
    threads = torch.get_num_threads()
    result = train_segmenter(
        SegmenterConfig.small(**{**TINY, "input_long_side": 32}),
        shapes,
        image_size=32,
        epochs=50,
        batch_size=4,
        max_minutes=0.02,
        seed=1,
        num_threads=1,
        ema_decay=0.9,
    )
    assert torch.get_num_threads() == threads  # restored after the call
    assert result.stopped_early is not None and "time budget" in result.stopped_early
    assert len(result.history) >= 1
    assert result.seconds < 20
    assert result.recipe["ema_decay"] == 0.9
    assert result.summary()["best_metrics"]["val_miou"] == result.best_metrics["val_miou"]
