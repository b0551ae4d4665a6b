"""Screenshots of the review app's three pages for docs/review.md, taken with headless Chromium.

    .venv/bin/python -m benchmarks.review_screenshots [--out docs/images]

Builds two synthetic shifts (``benchmarks/review_workspace.py``) in a temporary workspace, records a few verdicts,
serves the app and saves ``review-shifts.png``, ``review-shift.png`` and ``review-frame.png`` (zoomed onto the
heatmap's peak), each reduced to a colour palette small enough to stay under 200 KB.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from benchmarks.review_workspace import build_review_shift
from review.app import create_app
from review.server import background_server
from review.workspace import FrameTables, review_order, with_verdicts
from storage.frame_store import FrameStore
from storage.settings import Settings
from storage.verdicts import VerdictStore

SHIFT, EARLIER = "2026-12-01_night", "2026-11-30_night"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


MAX_BYTES = 200_000


def _small_png(path: Path) -> None:
    """Reduce a screenshot to an adaptive palette, of fewer colours until the file is under :data:`MAX_BYTES`."""
    with Image.open(path) as picture:
        original = picture.convert("RGB")
    for colours in (256, 192, 160, 128, 64):
        original.quantize(colors=colours, method=Image.Quantize.FASTOCTREE).save(path, optimize=True)
        if path.stat().st_size < MAX_BYTES:
            return


def _peak(settings: Settings, image_id: str) -> tuple[int, int]:
    """Where the frame's heatmap is highest (x, y): the screenshot zooms there."""
    heat = FrameStore(settings.store_path).heatmap(SHIFT, image_id)[...]
    y, x = np.unravel_index(int(np.argmax(heat)), heat.shape)
    return int(x), int(y)


def _shots(base: str, first: str, peak: tuple[int, int], out: Path) -> list[Path]:
    from playwright.sync_api import sync_playwright

    paths = [out / "review-shifts.png", out / "review-shift.png", out / "review-frame.png"]
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 760})
        page.goto(base)
        page.evaluate("localStorage.setItem('defectflow.reviewer', 'A. Novak')")
        page.screenshot(path=paths[0])
        page.goto(f"{base}/shifts/{SHIFT}")
        page.screenshot(path=paths[1])
        page.goto(f"{base}/shifts/{SHIFT}/frames/{first}")
        page.wait_for_selector("#viewer[data-loaded]")
        page.evaluate(f"defectflowViewer.look({peak[0] - 240}, {peak[1] - 180}, 480, 360)")
        page.wait_for_timeout(300)  # past the viewer's debounce
        page.wait_for_load_state("networkidle")
        page.wait_for_function("() => Number(document.querySelector('#viewer').dataset.loaded) >= 2")
        page.fill("#defect-type", "scratch")
        page.screenshot(path=paths[2])
        browser.close()
    for path in paths:
        _small_png(path)
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("docs/images"))
    arguments = parser.parse_args()
    arguments.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="review-shots-") as scratch:
        home = Path(scratch) / "home"
        build_review_shift(home, EARLIER, frames=4, size=(768, 1024))
        settings = build_review_shift(home, SHIFT, frames=6)
        verdicts = VerdictStore(settings.verdicts_path)
        frames = FrameTables(settings).frames(EARLIER)
        for image_id in frames["image_id"][:2]:
            verdicts.record(EARLIER, image_id, "false_alarm", "A. Novak")
        ordered = review_order(with_verdicts(FrameTables(settings).frames(SHIFT), SHIFT, {}))
        verdicts.record(SHIFT, ordered["image_id"].iloc[1], "defect", "A. Novak", defect_type="dent")
        with background_server(create_app(settings)) as base:
            first = ordered["image_id"].iloc[0]
            paths = _shots(base, first, _peak(settings, first), arguments.out)
    for path in paths:
        print(f"{path}: {path.stat().st_size // 1024} KB")


if __name__ == "__main__":
    main()
