"""Tests for the synthetic data generator (``synth``).

Small frames (192x256) keep the whole file to a few seconds on two cores; the properties checked
are the ones the pipeline relies on: determinism, label/mask consistency, realistic variation,
the MVTec layout and the shared crop rule.
"""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from synth import DEFECT_TYPES, crop_box, generate_dataset, generate_shift, render_empty_belt, render_frame
from synth.dataset import crop_frame
from synth.shift import plan_defects

SIZE = (192, 256)


def _digest(folder: Path) -> dict[str, str]:
    """sha256 of every file under ``folder``, keyed by relative path."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _read(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im)


def _labels(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def shift(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("shift")
    generate_shift(out, images=10, size=SIZE, defect_rate=0.5, seed=7)
    return out


# --------------------------------------------------------------------------- determinism


def test_same_seed_gives_identical_bytes_and_other_seed_differs(tmp_path: Path, shift: Path) -> None:
    again = tmp_path / "again"
    generate_shift(again, images=10, size=SIZE, defect_rate=0.5, seed=7)
    assert _digest(again) == _digest(shift)

    other = tmp_path / "other"
    generate_shift(other, images=3, size=SIZE, defect_rate=0.5, seed=8)
    for i in range(3):
        name = f"frame_{i:05d}.png"
        assert _digest(other / "frames")[name] != _digest(shift / "frames")[name]


def test_frame_does_not_depend_on_how_many_frames_are_made(tmp_path: Path) -> None:
    few, many = tmp_path / "few", tmp_path / "many"
    generate_shift(few, images=2, size=SIZE, defect_rate=0.0, seed=4)
    generate_shift(many, images=4, size=SIZE, defect_rate=0.0, seed=4)
    d_few, d_many = _digest(few / "frames"), _digest(many / "frames")
    assert set(d_few) == {"frame_00000.png", "frame_00001.png"}
    assert all(d_many[k] == v for k, v in d_few.items())


def test_regenerating_into_a_folder_removes_stale_frames(tmp_path: Path) -> None:
    generate_shift(tmp_path, images=3, size=SIZE, defect_rate=0.0, seed=1)
    generate_shift(tmp_path, images=1, size=SIZE, defect_rate=0.0, seed=1)
    assert [p.name for p in (tmp_path / "frames").iterdir()] == ["frame_00000.png"]
    assert len(list((tmp_path / "masks" / "regions").iterdir())) == 1


# --------------------------------------------------------------------------- shift contents


def test_labels_match_files_and_masks(shift: Path) -> None:
    rows = _labels(shift / "labels.csv")
    assert [r["file"] for r in rows] == [f"frame_{i:05d}.png" for i in range(10)]
    assert sum(r["label"] == "defect" for r in rows) == 5  # exactly round(10 * 0.5)
    assert {r["defect_type"] for r in rows if r["label"] == "defect"} == set(DEFECT_TYPES)
    h, w = SIZE
    for r in rows:
        assert r["label"] in ("good", "defect")
        assert (r["defect_type"] == "") == (r["label"] == "good")
        image = _read(shift / "frames" / r["file"])
        assert image.shape == (h, w, 3) and image.dtype == np.uint8
        region = _read(shift / "masks" / "regions" / r["file"])
        defect = _read(shift / "masks" / "defects" / r["file"])
        assert region.shape == defect.shape == (h, w)
        assert set(np.unique(region)) <= {0, 255} and set(np.unique(defect)) <= {0, 255}
        frac = (region > 0).mean()
        assert 0.01 < frac < 0.6, f"{r['file']}: component covers {frac:.1%} of the frame"
        if r["label"] == "good":
            assert not defect.any(), f"good frame {r['file']} has defect pixels"
            continue
        d, reg = defect > 0, region > 0
        assert d.any(), f"defect frame {r['file']} has an empty defect mask"
        if r["defect_type"] in ("missing", "bend"):
            # edge defects: every blob of changed pixels borders the remaining component
            if r["defect_type"] == "missing":
                assert not (d & reg).any(), "a missing piece must not be component"
            labels, n = ndimage.label(d)
            touching = np.unique(labels[ndimage.binary_dilation(reg, iterations=2) & d])
            assert set(range(1, n + 1)) <= set(touching.tolist()), f"{r['file']}: defect blob away from the part"
        else:
            off = d & ~ndimage.binary_dilation(reg, iterations=1)
            assert not off.any(), f"{r['file']}: {off.sum()} defect pixels off the component"
        assert d.sum() < 0.1 * reg.sum()


def test_plan_has_exact_defect_count_and_cycles_types() -> None:
    for images, rate in [(7, 0.3), (20, 0.2), (13, 1.0), (9, 0.0), (1, 0.6)]:
        plan = plan_defects(images, rate, seed=3)
        assert len(plan) == images
        assert sum(k is not None for k in plan) == round(images * rate)
    plan = plan_defects(20, 0.5, seed=11)
    kinds = [k for k in plan if k is not None]
    assert {kinds.count(k) for k in DEFECT_TYPES} == {2}
    assert plan != plan_defects(20, 0.5, seed=12)


def test_component_varies_in_position_rotation_and_shape() -> None:
    centroids, angles, areas, families = [], [], [], set()
    for i in range(12):
        f = render_frame(SIZE, (5, i))
        ys, xs = np.nonzero(f.region)
        centroids.append((ys.mean(), xs.mean()))
        cov = np.cov(np.stack([xs, ys]))
        angles.append(0.5 * np.degrees(np.arctan2(2 * cov[0, 1], cov[0, 0] - cov[1, 1])))
        areas.append(len(ys))
        families.add(f.info["family"])
        # the part is fully inside the frame
        assert not (f.region[0].any() or f.region[-1].any() or f.region[:, 0].any() or f.region[:, -1].any())
    c = np.asarray(centroids)
    assert c[:, 0].std() > 0.05 * SIZE[0] and c[:, 1].std() > 0.05 * SIZE[1]
    assert np.ptp(angles) > 45
    assert max(areas) > 1.5 * min(areas)
    assert len(families) >= 3


def test_background_is_textured_not_flat() -> None:
    f = render_frame(SIZE, (2, 0))
    bg = f.image[~ndimage.binary_dilation(f.region, iterations=6)].astype(np.float32)
    assert bg.std(axis=0).min() > 1.5  # belt pattern + lighting + sensor noise
    g = render_frame(SIZE, (2, 1))
    assert not np.array_equal(f.image, g.image)


@pytest.mark.parametrize("kind", DEFECT_TYPES)
def test_each_defect_kind_is_sized_and_placed_on_the_part(kind: str) -> None:
    for i in range(3):
        f = render_frame(SIZE, (9, i), kind)
        good = render_frame(SIZE, (9, i))
        area = f.defect.sum()
        assert 0.0005 * f.region_intact.sum() <= area <= 0.08 * f.region_intact.sum()
        # same key, same part: the defect is the only change on the component
        assert np.array_equal(good.region_intact, f.region_intact) or kind in ("bend", "missing")
        if kind == "missing":
            assert not (f.defect & f.region).any() and (f.defect <= f.region_intact).all()
        elif kind == "bend":
            changed = f.region ^ f.region_intact
            assert (f.defect & changed).sum() >= 0.7 * area
        else:
            assert (f.defect <= f.region).all()
            assert np.array_equal(f.region, good.region)
            # the pixels really changed where the mask says so
            diff = np.abs(f.image.astype(np.int16) - good.image.astype(np.int16)).max(axis=2)
            assert diff[f.defect].mean() > 2 * max(1.0, diff[f.region & ~f.defect].mean())


def test_crop_of_a_defect_frame_contains_the_whole_defect() -> None:
    for t, kind in enumerate(DEFECT_TYPES):
        f = render_frame(SIZE, (1, t), kind)
        crop, mask = crop_frame(f)
        assert crop.shape[:2] == mask.shape
        assert mask.sum() == f.defect.sum()


# --------------------------------------------------------------------------- dataset


def test_dataset_layout_counts_and_masks(tmp_path: Path) -> None:
    s = generate_dataset(
        tmp_path, train_good=3, test_good=2, test_defect_per_type=2, seg_images=5, size=SIZE, seg_long_side=128, seed=0
    )
    mv = tmp_path / "mvtec"
    assert len(list((mv / "train" / "good").glob("*.png"))) == 3
    assert len(list((mv / "test" / "good").glob("*.png"))) == 2
    for kind in DEFECT_TYPES:
        crops = sorted((mv / "test" / kind).glob("*.png"))
        assert [p.name for p in crops] == ["000.png", "001.png"]
        for p in crops:
            img = _read(p)
            gt = _read(mv / "ground_truth" / kind / f"{p.stem}_mask.png")
            assert img.ndim == 3 and img.shape[2] == 3
            assert gt.shape == img.shape[:2]
            assert set(np.unique(gt)) == {0, 255}
    for p in (mv / "train" / "good").glob("*.png"):
        img = _read(p)
        assert 16 < img.shape[0] <= SIZE[0] and 16 < img.shape[1] <= SIZE[1]

    images = sorted((tmp_path / "segmentation" / "images").glob("*.png"))
    masks = sorted((tmp_path / "segmentation" / "masks").glob("*.png"))
    assert [p.name for p in images] == [p.name for p in masks] == [f"seg_{i:05d}.png" for i in range(5)]
    for pi, pm in zip(images, masks, strict=True):
        img, m = _read(pi), _read(pm)
        assert img.shape == (96, 128, 3) and m.shape == (96, 128) and m.dtype == np.uint8
        assert set(np.unique(m)) == {0, 1}
    assert s.seg_defective == 1 and s.seg_size == (96, 128)
    assert (tmp_path / "README.txt").read_text().count("seed=0") == 1

    # no frame shared between splits
    digests = [hashlib.sha256(p.read_bytes()).hexdigest() for p in mv.rglob("*.png") if "ground_truth" not in str(p)]
    assert len(digests) == len(set(digests)) == 3 + 2 + 2 * len(DEFECT_TYPES)


def test_dataset_is_deterministic(tmp_path: Path) -> None:
    kw = dict(train_good=2, test_good=1, test_defect_per_type=1, seg_images=2, size=SIZE, seg_long_side=128)
    calls: list[int] = []
    generate_dataset(tmp_path / "a", seed=5, progress=calls.append, **kw)
    generate_dataset(tmp_path / "b", seed=5, **kw)
    generate_dataset(tmp_path / "c", seed=6, **kw)
    assert calls == list(range(1, 2 + 1 + len(DEFECT_TYPES) + 2 + 1))
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    a, c = _digest(tmp_path / "a"), _digest(tmp_path / "c")
    assert a["mvtec/train/good/000.png"] != c["mvtec/train/good/000.png"]


# --------------------------------------------------------------------------- crop rule


def test_crop_box_expands_by_margin() -> None:
    m = np.zeros((100, 200), bool)
    m[40:60, 50:150] = True  # box 20 x 100: margin = max(16, round(8.0)) = 16
    assert crop_box(m) == (24, 34, 76, 166)
    big = np.zeros((600, 800), np.uint8)
    big[100:400, 200:600] = 1  # box 300 x 400: margin = round(32.0) = 32
    assert crop_box(big) == (68, 168, 432, 632)
    assert crop_box(big, margin_fraction=0.1, min_margin=0) == (60, 160, 440, 640)


def test_crop_box_clips_to_frame_and_handles_empty() -> None:
    m = np.zeros((50, 60), bool)
    m[0:10, 55:60] = True
    assert crop_box(m) == (0, 39, 26, 60)
    assert crop_box(np.zeros((10, 10), bool)) is None
    with pytest.raises(ValueError, match="2-D"):
        crop_box(np.zeros((2, 10, 10), bool))


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"images": 0}, "images must be"),
        ({"defect_rate": 1.5}, "defect_rate"),
        ({"defect_rate": -0.1}, "defect_rate"),
        ({"size": (64, 256)}, "too small"),
        ({"seed": -1}, "seed"),
    ],
)
def test_shift_rejects_bad_arguments(tmp_path: Path, kwargs: dict[str, object], match: str) -> None:
    args: dict[str, object] = {"images": 1, "size": SIZE, **kwargs}
    with pytest.raises(ValueError, match=match):
        generate_shift(tmp_path, **args)  # type: ignore[arg-type]


def test_dataset_rejects_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="train_good"):
        generate_dataset(tmp_path, train_good=0, size=SIZE, seg_long_side=128)
    with pytest.raises(ValueError, match="seg_long_side"):
        generate_dataset(tmp_path, train_good=1, size=SIZE, seg_long_side=16)


def test_segmentation_images_are_never_upscaled(tmp_path: Path) -> None:
    s = generate_dataset(tmp_path, train_good=1, test_good=0, test_defect_per_type=0, seg_images=1, size=SIZE)
    assert s.seg_size == SIZE  # default seg_long_side=512 > 256
    assert _read(tmp_path / "segmentation" / "images" / "seg_00000.png").shape == (*SIZE, 3)
    assert _read(tmp_path / "segmentation" / "masks" / "seg_00000.png").shape == SIZE


def test_empty_belt_frames_are_deterministic() -> None:
    first, again = render_empty_belt((160, 200), (4, 1)), render_empty_belt((160, 200), (4, 1))
    assert first.shape == (160, 200, 3) and first.dtype == np.uint8
    assert np.array_equal(first, again)
    assert not np.array_equal(first, render_empty_belt((160, 200), (4, 2)))


def test_one_product_fixes_the_part_and_material_but_not_the_frame() -> None:
    from synth.frame import render_frame

    fixed = [render_frame((192, 256), (0, i), product=3) for i in range(4)]
    drawn = [render_frame((192, 256), (0, i)) for i in range(12)]
    assert len({(f.info["family"], f.info["material"]) for f in fixed}) == 1
    assert len({(f.info["family"], f.info["material"]) for f in drawn}) > 1
    assert not np.array_equal(fixed[0].image, fixed[1].image)


def test_a_product_carries_the_same_marks_on_every_part_and_a_one_off_part_its_own() -> None:
    from types import SimpleNamespace

    from synth.frame import _print_marks, product_part

    def printed(product: int | None, frame: int, long_side: float) -> np.ndarray:
        shape = product_part(0 if product is None else product, long_side)
        rgb = np.full((3, *shape.solid.shape), 128.0, np.float32)
        scene = SimpleNamespace(product=product, surf_rng=np.random.default_rng([frame, 5]), long_side=long_side)
        _print_marks(scene, rgb, shape.solid, shape.solid)
        return rgb

    marked = [p for p in range(6) if not np.array_equal(printed(p, 0, 300.0), np.full_like(printed(p, 0, 300.0), 128))]
    assert marked, "some products carry marks"
    for product in marked:
        assert np.array_equal(printed(product, 0, 300.0), printed(product, 1, 300.0))
        smaller = printed(product, 2, 240.0)  # a part further from the camera: the marks scale with it
        assert (smaller != 128).any()
    one_off = [printed(None, frame, 300.0) for frame in range(4)]
    assert any(not np.array_equal(one_off[0], other) for other in one_off[1:])
