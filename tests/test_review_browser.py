"""The review app in a real headless Chromium (Debian's ``chromium``, driven by Playwright; no browser download).

A reviewer opens the scored shift, sees its flagged frames first, opens a frame, zooms, records verdicts with the
keyboard, goes on with "next unreviewed", reloads, and finds the verdicts.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from flows.results import ScoringResult
from review.app import create_app
from review.server import background_server
from storage.settings import load_settings
from storage.tables import read_scores
from storage.verdicts import VerdictStore
from tests.pipeline import SHIFT, Workspace

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def _browser_or_skip() -> str:
    chromium = CHROMIUM if Path(CHROMIUM).is_file() else shutil.which("chromium")
    if chromium is None:
        pytest.skip("no Chromium installed (Debian package 'chromium'; .ci/run installs it): review app not driven")
    pytest.importorskip("playwright.sync_api", reason="playwright is in the dev extras: pip install -e '.[dev]'")
    return chromium


def test_a_reviewer_records_verdicts_with_the_keyboard(
    workspace: Workspace, scored: ScoringResult, tmp_path: Path
) -> None:
    from playwright.sync_api import expect, sync_playwright

    chromium = _browser_or_skip()
    source = load_settings(workspace.home)
    home = tmp_path / "home"
    shutil.copytree(source.results_dir(SHIFT), home / "results" / SHIFT)
    shutil.copytree(source.store_path / "shifts" / SHIFT, home / "store.zarr" / "shifts" / SHIFT)
    settings = load_settings(home)
    scores = read_scores(settings.results_dir(SHIFT))
    flagged = scores[(scores["status"] == "scored") & scores["is_anomalous"].astype(bool)]
    first = (flagged if len(flagged) else scores).sort_values("score", ascending=False)["image_id"].iloc[0]
    with background_server(create_app(settings)) as base, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        regions: list[str] = []
        page.on("request", lambda request: regions.append(request.url) if "/region?" in request.url else None)
        page.goto(base)
        page.click(f"a[href='/shifts/{SHIFT}']")
        expect(page.locator("tr.frame.flagged")).to_have_count(len(flagged))
        assert page.locator("tr.frame").first.get_attribute("data-image-id") == first
        page.locator("tr.frame a").first.click()
        page.wait_for_selector("#viewer[data-loaded]")
        whole = _widest_image_region(regions)
        page.locator("#viewer").focus()
        page.keyboard.press("+")
        page.keyboard.press("+")
        page.wait_for_function("() => document.querySelector('#zoom-level').textContent !== ''")
        page.wait_for_timeout(400)
        assert _narrowest_image_region(regions) < whole  # zoomed in: a smaller part of the frame was asked for
        page.fill("#reviewer", "ana")
        page.locator("#reviewer").dispatch_event("change")
        page.locator("#viewer").focus()
        page.keyboard.press("d")
        expect(page.locator("#verdict-status")).to_contain_text("recorded")
        page.keyboard.press("n")
        page.wait_for_url(re.compile(r"/frames/(?!" + re.escape(first) + r"$)"))
        second = page.url.rsplit("/", 1)[-1]
        page.keyboard.press("f")
        expect(page.locator("#verdict-status")).to_contain_text("recorded: false alarm by ana")
        page.reload()
        expect(page.locator("#history li").first).to_have_attribute("data-verdict", "false_alarm")
        assert page.input_value("#reviewer") == "ana"  # remembered in this browser
        page.goto(f"{base}/shifts/{SHIFT}")
        expect(page.locator(f"tr[data-image-id='{first}'] td.verdict")).to_have_text("defect")
        expect(page.locator(f"tr[data-image-id='{second}'] td.verdict")).to_have_text("false alarm")
        browser.close()
    latest = VerdictStore(settings.verdicts_path).latest(SHIFT)
    assert latest[SHIFT, first].verdict == "defect" and latest[SHIFT, second].verdict == "false_alarm"
    assert {record.reviewer for record in latest.values()} == {"ana"}


def _region_widths(urls: list[str]) -> list[int]:
    return [int(re.search(r"[?&]w=(\d+)", url).group(1)) for url in urls if "layer=image" in url]


def _widest_image_region(urls: list[str]) -> int:
    return max(_region_widths(urls))


def _narrowest_image_region(urls: list[str]) -> int:
    return min(_region_widths(urls))
