"""Opening the review page of a 2048x1536 frame, against the bare computation behind it.

    .venv/bin/python -m benchmarks.review_page                       # a synthetic shift in a temporary folder
    .venv/bin/python -m benchmarks.review_page --home DIR --shift ID [--frame ID]

The app runs on uvicorn on 127.0.0.1 in this process. "HTTP" is what a browser asks for to open a frame: the page,
then the three layers of the first view (frame, heatmap, contour; fetched at once, as the browser does), for a
viewer of 1024x768 showing the whole frame. "Chromium" (when Chromium and Playwright are installed) is a headless
browser's time from navigation to all three layers drawn, read from the page's own clock (``performance.now()``).
"Bare" is the computation alone, in this process without HTTP: reading the same region of each layer from zarr,
shrinking it and encoding it. Medians of ``--repeats``; the first (cold) opening is printed too.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from review.app import create_app
from review.regions import Layer, plan_region, render_region
from review.server import background_server
from review.workspace import FrameTables, review_order, with_verdicts
from storage.frame_store import FrameStore
from storage.settings import Settings, load_settings
from storage.verdicts import VerdictStore

VIEWER = (1024, 768)
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


def _layer_urls(settings: Settings, shift: str, frame: str) -> tuple[str, list[str]]:
    row = FrameTables(settings).frame(shift, frame)
    height, width = int(row["height"]), int(row["width"])
    page = f"/shifts/{shift}/frames/{frame}"
    query = f"x=0&y=0&w={width}&h={height}&width={VIEWER[0]}&height={VIEWER[1]}"
    return page, [f"{page}/region?layer={layer.value}&{query}" for layer in Layer]


def time_http(base: str, page: str, layers: list[str], repeats: int) -> list[float]:
    """Seconds to fetch the page and then its three layers at once, ``repeats`` times."""
    seconds = []
    with httpx.Client(base_url=base, timeout=60) as client, ThreadPoolExecutor(len(layers)) as pool:
        for _ in range(repeats):
            start = time.perf_counter()
            client.get(page).raise_for_status()
            for answer in pool.map(client.get, layers):
                answer.raise_for_status()
            seconds.append(time.perf_counter() - start)
    return seconds


def time_bare(settings: Settings, shift: str, frame: str, repeats: int) -> list[float]:
    """Seconds to read, shrink and encode the three layers of the first view, one after another."""
    store = FrameStore(settings.store_path)
    row = FrameTables(settings).frame(shift, frame)
    shape = (int(row["height"]), int(row["width"]))
    region = plan_region(shape, 0, 0, shape[1], shape[0], *VIEWER)
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        for layer in Layer:
            render_region(store, shift, frame, layer, region)
        seconds.append(time.perf_counter() - start)
    return seconds


def time_chromium(base: str, page: str, repeats: int) -> list[float] | None:
    """Seconds from navigation to every layer drawn in headless Chromium, or ``None`` without a browser."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return None
    if not Path("/usr/bin/chromium").is_file():
        return None
    seconds = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        for _ in range(repeats):
            context = browser.new_context(viewport={"width": 1400, "height": 1000})  # an empty cache each time
            tab = context.new_page()
            tab.goto(base + page, wait_until="commit")
            tab.wait_for_selector("#viewer[data-loaded]", timeout=60_000)
            seconds.append(float(tab.get_attribute("#viewer", "data-first-drawn-ms")) / 1000)  # the page's own clock
            context.close()
        browser.close()
    return seconds


def _line(name: str, seconds: list[float] | None) -> str:
    if not seconds:
        return f"{name:<10} not measured (no Chromium or no playwright)"
    return f"{name:<10} median {statistics.median(seconds[1:] or seconds):.3f} s   first {seconds[0]:.3f} s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--home", type=Path, help="an existing workspace (default: a synthetic one, 2048x1536)")
    parser.add_argument("--shift", default="review-demo")
    parser.add_argument("--frame", help="image id (default: the first frame in review order)")
    parser.add_argument("--repeats", type=int, default=6)
    arguments = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="review-bench-") as scratch:
        if arguments.home is None:
            from benchmarks.review_workspace import build_review_shift

            settings = build_review_shift(Path(scratch) / "home", arguments.shift, frames=1)
        else:
            settings = load_settings(arguments.home)
        frames = FrameTables(settings).frames(arguments.shift)
        latest = VerdictStore(settings.verdicts_path).latest(arguments.shift)
        frame = arguments.frame or review_order(with_verdicts(frames, arguments.shift, latest))["image_id"].iloc[0]
        page, layers = _layer_urls(settings, arguments.shift, frame)
        with background_server(create_app(settings)) as base:
            http = time_http(base, page, layers, arguments.repeats)
            chromium = time_chromium(base, page, arguments.repeats)
        bare = time_bare(settings, arguments.shift, frame, arguments.repeats)
        row = frames.loc[frame]
        print(f"frame {frame} of shift {arguments.shift}: {int(row['width'])}x{int(row['height'])}, viewer {VIEWER}")
        for name, seconds in (("HTTP", http), ("Chromium", chromium), ("bare", bare)):
            print(_line(name, seconds))


if __name__ == "__main__":
    main()
